package keys

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Paging limits of every list.
const (
	DefaultPageSize = 30
	MaxPageSize     = 100
)

// pageSpec is a validated page request.
type pageSpec struct {
	offset, size int
	sort         []Sort
}

// normalize validates paging options against the allowed sort fields.
func normalize(o ListOptions, fields []string, def Sort) (pageSpec, error) {
	v := &ValidationError{}
	page, size := o.Page, o.Size
	if page == 0 {
		page = 1
	}
	if size == 0 {
		size = DefaultPageSize
	}
	if page < 1 {
		v.Add("page", "must be at least 1")
	}
	if size < 1 || size > MaxPageSize {
		v.Add("size", fmt.Sprintf("must be between 1 and %d", MaxPageSize))
	} else if page > 1 && page-1 > math.MaxInt32/size {
		// The offset (page-1)*size must not wrap around: a page that far
		// out is a caller's mistake, not an empty page.
		v.Add("page", fmt.Sprintf("is too large: (page-1) × size may be at most %d", math.MaxInt32))
	}
	sorts := o.Sort
	if len(sorts) == 0 {
		sorts = []Sort{def}
	}
	for _, s := range sorts {
		if !slices.Contains(fields, s.Field) {
			v.Add("sort", fmt.Sprintf("unknown field %q (allowed: %s)", s.Field, strings.Join(fields, ", ")))
		}
	}
	if err := v.Err(); err != nil {
		return pageSpec{}, err
	}
	return pageSpec{offset: (page - 1) * size, size: size, sort: sorts}, nil
}

// lister pages through the records of one table by its sort indexes.
type lister[T any] struct {
	table string
	// index names the index of a sort field.
	index func(field string) string
	// sortKey returns a record's sort key for a field (as stored in its index).
	sortKey func(v *T, field string) string
	// id returns a record's id (its index member).
	id func(v *T) string
	// filter keeps the matching records of a batch; nil keeps all.
	filter func(tx Tx, batch []T) ([]T, error)
}

// list returns one page. With one sort field and no filter the page comes
// straight from the index; with a filter the index is walked in chunks;
// with several sort fields the filtered set is sorted in memory.
func (l lister[T]) list(tx Tx, ps pageSpec) (Page[T], error) {
	first := ps.sort[0]
	index := l.index(first.Field)
	if len(ps.sort) > 1 {
		all, err := l.collect(tx, index, first.Desc)
		if err != nil {
			return Page[T]{}, err
		}
		return l.inMemory(all, ps), nil
	}
	if l.filter == nil {
		total, err := tx.IndexCount(index)
		if err != nil {
			return Page[T]{}, fmt.Errorf("counting %s: %w", index, err)
		}
		ids, err := tx.IndexRange(index, ps.offset, ps.size, first.Desc)
		if err != nil {
			return Page[T]{}, fmt.Errorf("reading index %s: %w", index, err)
		}
		items, err := getManyJSON[T](tx, l.table, ids)
		if err != nil {
			return Page[T]{}, err
		}
		return Page[T]{Items: nonNilItems(items), Total: total}, nil
	}
	p := Page[T]{Items: []T{}}
	err := walkIndex(tx, index, first.Desc, func(ids []string) (bool, error) {
		batch, err := l.load(tx, ids)
		if err != nil {
			return false, err
		}
		for _, v := range batch {
			if p.Total >= ps.offset && p.Total < ps.offset+ps.size {
				p.Items = append(p.Items, v)
			}
			p.Total++
		}
		return true, nil
	})
	return p, err
}

// load reads and filters the records of ids.
func (l lister[T]) load(tx Tx, ids []string) ([]T, error) {
	batch, err := getManyJSON[T](tx, l.table, ids)
	if err != nil || l.filter == nil {
		return batch, err
	}
	return l.filter(tx, batch)
}

// collect loads every matching record of an index.
func (l lister[T]) collect(tx Tx, index string, desc bool) ([]T, error) {
	var all []T
	err := walkIndex(tx, index, desc, func(ids []string) (bool, error) {
		batch, err := l.load(tx, ids)
		all = append(all, batch...)
		return true, err
	})
	return all, err
}

// inMemory sorts records by every sort field (then id) and cuts one page.
func (l lister[T]) inMemory(all []T, ps pageSpec) Page[T] {
	slices.SortStableFunc(all, func(a, b T) int {
		for _, s := range ps.sort {
			c := cmp.Compare(l.sortKey(&a, s.Field), l.sortKey(&b, s.Field))
			if s.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(l.id(&a), l.id(&b))
	})
	p := Page[T]{Items: []T{}, Total: len(all)}
	if ps.offset < len(all) {
		p.Items = append(p.Items, all[ps.offset:min(ps.offset+ps.size, len(all))]...)
	}
	return p
}

// keep returns a filter from a predicate.
func keep[T any](pred func(*T) bool) func(Tx, []T) ([]T, error) {
	return func(_ Tx, batch []T) ([]T, error) {
		out := batch[:0]
		for i := range batch {
			if pred(&batch[i]) {
				out = append(out, batch[i])
			}
		}
		return out, nil
	}
}

func nonNilItems[T any](items []T) []T {
	if items == nil {
		return []T{}
	}
	return items
}

// containsFold reports whether any of fields contains q, case-insensitively.
func containsFold(q string, fields ...string) bool {
	q = strings.ToLower(q)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}
