package importer

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// csvColumns are the columns of the CSV format, in the order keygate
// writes them; a file may order them as it likes and leave out key or
// key_sha256.
var csvColumns = []string{"user_id", "user_name", "user_type", "role", "customer_roles", "key_name", "key", "key_sha256", "expires_at"}

func (r *reader) csv(data []byte) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a spreadsheet's BOM
	cr := csv.NewReader(bytes.NewReader(data))
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("no CSV header line: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(csvColumns, h) {
			return fmt.Errorf("CSV header: unknown column %q (columns: %s)", clip(h), strings.Join(csvColumns, ","))
		}
		if _, dup := col[h]; dup {
			return fmt.Errorf("CSV header: column %q twice", h)
		}
		col[h] = i
	}
	for _, need := range []string{"user_id", "key_name"} {
		if _, ok := col[need]; !ok {
			return fmt.Errorf("CSV header: column %s is required", need)
		}
	}
	_, hasKey := col["key"]
	_, hasSum := col["key_sha256"]
	if !hasKey && !hasSum {
		return fmt.Errorf("CSV header: column key or key_sha256 is required")
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	users := map[string]int{}
	for n := 0; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if n >= MaxEntries {
			return fmt.Errorf("the file has more than %d lines; at most %d per import", MaxEntries, MaxEntries)
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			r.invalid(fmt.Sprintf("line %d", pe.StartLine), "key", pe.Err.Error())
			continue
		} else if err != nil {
			return fmt.Errorf("reading CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		ref := fmt.Sprintf("line %d", line)
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		uid := get(rec, "user_id")
		if err := keys.ValidateID(uid); err != nil {
			r.invalid(ref, "user", "user_id "+err.Error())
			continue
		}
		u := keys.User{
			ID: uid, Name: userName(get(rec, "user_name"), uid),
			Type: keys.UserType(strings.ToUpper(get(rec, "user_type"))), Role: keys.Role(strings.ToUpper(get(rec, "role"))),
		}
		if u.Type == "" {
			u.Type = keys.UserService
		}
		if !slices.Contains([]keys.UserType{keys.UserTechnical, keys.UserService, keys.UserApplication}, u.Type) {
			r.invalid(ref, "user", "user_type must be TECHNICAL, SERVICE or APPLICATION")
			continue
		}
		if u.Role == "" {
			u.Role = keys.RoleMember
		}
		if !slices.Contains([]keys.Role{keys.RoleAdmin, keys.RoleMember, keys.RoleViewer}, u.Role) {
			r.invalid(ref, "user", "role must be ADMIN, MEMBER or VIEWER")
			continue
		}
		var roles []string
		if v := get(rec, "customer_roles"); v != "" {
			roles = strings.FieldsFunc(v, func(c rune) bool { return c == ';' || c == '|' })
		}
		u.CustomerRoles = r.cleanRoles(ref+".customer_roles", roles)
		name := get(rec, "key_name")
		k := keys.ImportKey{Ref: ref, ExternalID: uid + "/" + name, Name: name}
		plain, sum := get(rec, "key"), get(rec, "key_sha256")
		switch {
		case plain != "" && sum != "":
			r.invalid(ref, "key", "both key and key_sha256")
			continue
		case plain != "":
			k.Plaintext = plain
		case sum != "":
			b, err := decodeDigest(sum, 32)
			if err != nil {
				r.invalid(ref, "key", "key_sha256: "+err.Error())
				continue
			}
			k.HashScheme, k.Hash = keys.HashSHA256, b
		default:
			r.invalid(ref, "key", "neither key nor key_sha256")
			continue
		}
		if name == "" {
			r.invalid(ref, "key", "key_name is empty")
			continue
		}
		if e := get(rec, "expires_at"); e != "" {
			t, err := parseTime(e)
			if err != nil {
				r.invalid(ref, "key", "expires_at: "+err.Error())
				continue
			}
			k.ExpiresAt = t
		}
		r.expire(&k, k.ExpiresAt)
		if ui, ok := users[uid]; ok {
			prev := &r.res.Batch.Users[ui]
			if prev.User.Name != u.Name || prev.User.Type != u.Type || prev.User.Role != u.Role || !slices.Equal(prev.User.CustomerRoles, u.CustomerRoles) {
				r.invalid(ref, "key", fmt.Sprintf("user %s differs from %s", uid, prev.Ref))
				continue
			}
			prev.Keys = append(prev.Keys, k)
			continue
		}
		users[uid] = len(r.res.Batch.Users)
		r.res.Batch.Users = append(r.res.Batch.Users, keys.ImportUser{Ref: ref, ExternalID: uid, User: u, Keys: []keys.ImportKey{k}})
	}
	return nil
}

// parseTime reads an RFC 3339 time or a date (midnight UTC).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a date (2006-01-02)", clip(s))
}

// ParseExpiry reads the --expires value: an RFC 3339 time, a date, or a
// duration from now (e.g. 8760h).
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("the expiry must be in the future")
		}
		return now.Add(d), nil
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, err
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("the expiry must be in the future")
	}
	return t, nil
}
