package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Bounds of User.Meta, Key.Meta and the tags of both.
const (
	// MaxMeta is the largest meta object, in bytes of its JSON.
	MaxMeta = 4096
	// MaxTags is how many tags a user or key may carry.
	MaxTags = 50
	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = 64
)

// checkMeta adds a field error unless meta is empty or a JSON object of at
// most MaxMeta bytes.
func checkMeta(v *ValidationError, field string, meta json.RawMessage) {
	if len(meta) == 0 {
		return
	}
	if len(meta) > MaxMeta {
		v.Add(field, fmt.Sprintf("must be at most %d bytes of JSON", MaxMeta))
		return
	}
	if t := bytes.TrimLeft(meta, " \t\r\n"); len(t) == 0 || t[0] != '{' || !json.Valid(meta) {
		v.Add(field, "must be a JSON object")
	}
}

// checkTags adds a field error unless tags are at most MaxTags unique
// strings of 1 to MaxTagLen bytes without control characters.
func checkTags(v *ValidationError, field string, tags []string) {
	if len(tags) > MaxTags {
		v.Add(field, fmt.Sprintf("must have at most %d entries", MaxTags))
		return
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		switch {
		case t == "" || len(t) > MaxTagLen:
			v.Add(field, fmt.Sprintf("entries must be 1 to %d bytes", MaxTagLen))
			return
		case strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			v.Add(field, "entries must not contain control characters")
			return
		case seen[t]:
			v.Add(field, "entries must be unique")
			return
		}
		seen[t] = true
	}
}

// ValidateMeta checks a meta object as the store does.
func ValidateMeta(field string, meta json.RawMessage) error {
	v := &ValidationError{}
	checkMeta(v, field, meta)
	return v.Err()
}

// ValidateTags checks tags as the store does.
func ValidateTags(field string, tags []string) error {
	v := &ValidationError{}
	checkTags(v, field, tags)
	return v.Err()
}
