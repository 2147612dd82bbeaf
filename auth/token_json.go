package auth

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The access-token verifier reads header and claims with this small
// scanner instead of encoding/json's reflection, which allocates a dozen
// times per token. Input is checked with json.Valid first (pooled scanner,
// no allocation), so the walk below may assume well-formed JSON.

// jsonMembers calls fn with the raw key (without quotes) and raw value of
// every top-level member of obj. It reports false when obj is not a valid
// JSON object or fn returns false.
func jsonMembers(obj []byte, fn func(key, val []byte) bool) bool {
	if !json.Valid(obj) {
		return false
	}
	i := skipWS(obj, 0)
	if obj[i] != '{' {
		return false
	}
	i++
	for {
		i = skipWS(obj, i)
		switch obj[i] {
		case '}':
			return true
		case ',':
			i++
			continue
		}
		ke := stringEnd(obj, i)
		key := obj[i+1 : ke]
		i = skipWS(obj, ke+1) + 1 // past ':'
		i = skipWS(obj, i)
		ve := valueEnd(obj, i)
		if !fn(key, obj[i:ve]) {
			return false
		}
		i = ve
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the closing quote of the string at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; ; j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
}

// valueEnd returns the index just past the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i) + 1
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j)
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// jsonStringBytes returns the contents of a raw JSON string without
// copying when it has no escapes; ok is false for non-strings.
func jsonStringBytes(raw []byte) (s []byte, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var str string
	if json.Unmarshal(raw, &str) != nil {
		return nil, false
	}
	return []byte(str), true
}

// jsonInt reads a raw JSON integer; ok is false for anything else.
func jsonInt(raw []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}
