package importer

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// tykSession is the part of a Tyk session object (user.SessionState)
// keygate reads.
type tykSession struct {
	Alias         string                     `json:"alias"`
	MetaData      map[string]any             `json:"meta_data"`
	Tags          []string                   `json:"tags"`
	Expires       int64                      `json:"expires"`
	Rate          float64                    `json:"rate"`
	Per           float64                    `json:"per"`
	QuotaMax      int64                      `json:"quota_max"`
	IsInactive    bool                       `json:"is_inactive"`
	OrgID         string                     `json:"org_id"`
	AccessRights  map[string]json.RawMessage `json:"access_rights"`
	ApplyPolicies []string                   `json:"apply_policies"`
	ApplyPolicyID string                     `json:"apply_policy_id"`
	BasicAuthData struct {
		Password string `json:"password"`
	} `json:"basic_auth_data"`
	JWTData struct {
		Secret string `json:"secret"`
	} `json:"jwt_data"`
	HMACEnabled bool   `json:"hmac_enabled"`
	Certificate string `json:"certificate"`
}

// tykEntry is one session and the id Tyk keeps it under.
type tykEntry struct {
	ref     string
	id      string // the key, or Tyk's hash of it
	hashed  bool
	session json.RawMessage
}

// tykListing is the key list form: {"keys":[{"key_id"|"key_hash"|"key", "data"}]}.
type tykListing struct {
	Keys []struct {
		KeyID   string          `json:"key_id"`
		KeyHash string          `json:"key_hash"`
		Key     string          `json:"key"`
		Data    json.RawMessage `json:"data"`
	} `json:"keys"`
}

// tykScheme is the legacy scheme of a Tyk key hash, from its length: Tyk
// hex-encodes murmur32 (8), murmur64 (16), murmur128 (32) or sha256 (64).
func tykScheme(h string) (string, []byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", nil, fmt.Errorf("not a Tyk key hash (hex); with hash_keys off give the keys as plain")
	}
	switch len(b) {
	case 4:
		return keys.HashMurmur32, b, nil
	case 8:
		return keys.HashMurmur64, b, nil
	case 16:
		return keys.HashMurmur128, b, nil
	case 32:
		return keys.HashSHA256, b, nil
	}
	return "", nil, fmt.Errorf("a Tyk key hash has 8, 16, 32 or 64 hex digits, not %d", len(h))
}

func (r *reader) tyk(data []byte) error {
	var entries []tykEntry
	trimmed := bytes.TrimSpace(data)
	var listing tykListing
	var redis map[string]json.RawMessage
	switch {
	case json.Unmarshal(trimmed, &listing) == nil && listing.Keys != nil:
		for i, k := range listing.Keys {
			e := tykEntry{ref: fmt.Sprintf("keys[%d]", i), session: k.Data}
			switch {
			case k.KeyHash != "":
				e.id, e.hashed = k.KeyHash, true
			case k.Key != "":
				e.id = k.Key
			default:
				e.id, e.hashed = k.KeyID, !r.opts.TykPlainKeys
			}
			entries = append(entries, e)
		}
	case json.Unmarshal(trimmed, &redis) == nil:
		names := make([]string, 0, len(redis))
		for name := range redis {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			id, ok := strings.CutPrefix(name, "apikey-")
			if !ok {
				continue // other Tyk records (quotas, rate limiters, policies)
			}
			entries = append(entries, tykEntry{ref: "apikey-…" + tail(id), id: id, hashed: !r.opts.TykPlainKeys, session: redis[name]})
		}
	default:
		return fmt.Errorf("not Tyk key sessions: expected {\"apikey-<hash>\": session} or {\"keys\": [...]}")
	}
	if len(entries) > MaxEntries {
		return fmt.Errorf("the file has %d keys; at most %d per import", len(entries), MaxEntries)
	}
	users := map[string]int{} // alias → index in Batch.Users
	for _, e := range entries {
		raw := bytes.TrimSpace(e.session)
		if len(raw) > 0 && raw[0] == '"' { // Redis holds the session as a JSON string
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				r.invalid(e.ref, "key", "the session is not JSON")
				continue
			}
			raw = []byte(s)
		}
		var s tykSession
		if err := json.Unmarshal(raw, &s); err != nil {
			r.invalid(e.ref, "key", "the session is not a Tyk session object")
			continue
		}
		if e.id == "" {
			r.invalid(e.ref, "key", "no key id")
			continue
		}
		switch {
		case s.BasicAuthData.Password != "":
			r.invalid(e.ref, "key", "a basic-auth session, not a key")
			continue
		case s.JWTData.Secret != "" || s.HMACEnabled || s.Certificate != "":
			r.invalid(e.ref, "key", "a JWT, HMAC or certificate session, not a bearer key")
			continue
		}
		fp := r.opts.Fingerprint("tyk\x00" + e.id)
		k := keys.ImportKey{Ref: e.ref, ExternalID: fp, Name: "tyk " + fp[:8], Tags: r.cleanTags(e.ref, s.Tags)}
		if e.hashed {
			scheme, sum, err := tykScheme(e.id)
			if err != nil {
				r.invalid(e.ref, "key", err.Error())
				continue
			}
			k.HashScheme, k.Hash = scheme, sum
		} else {
			k.Plaintext = e.id
		}
		if s.IsInactive {
			k.Status = keys.KeyInactive
		}
		if s.Expires > 0 {
			k.ExpiresAt = time.Unix(s.Expires, 0)
		}
		r.expire(&k, k.ExpiresAt)
		if s.QuotaMax > 0 {
			r.warn("%s: quota_max %d not imported: keygate limits requests per window only", e.ref, s.QuotaMax)
		}
		if len(s.ApplyPolicies) > 0 || s.ApplyPolicyID != "" {
			r.warn("%s: policies not imported: their limits and rights do not apply in keygate", e.ref)
		}
		var limit int64
		if s.Rate > 0 && s.Per > 0 {
			if l, ok := r.limit(s.Rate, time.Duration(s.Per*float64(time.Second))); ok {
				limit = l
			} else {
				r.warn("%s: rate %v per %vs not imported: keygate limits per %s window", e.ref, s.Rate, s.Per, r.opts.Window)
			}
		}
		meta := map[string]any{}
		for mk, mv := range s.MetaData {
			meta[mk] = mv
		}
		tykMeta := map[string]any{}
		if s.OrgID != "" {
			tykMeta["orgId"] = s.OrgID
		}
		if len(s.AccessRights) > 0 {
			apis := make([]string, 0, len(s.AccessRights))
			for api := range s.AccessRights {
				apis = append(apis, api)
			}
			sort.Strings(apis)
			tykMeta["apis"] = apis
		}
		if len(tykMeta) > 0 {
			meta["tyk"] = tykMeta
		}
		mb, _ := json.Marshal(meta)
		if len(mb) > keys.MaxMeta {
			r.warn("%s: meta_data larger than %d bytes not imported", e.ref, keys.MaxMeta)
			mb = nil
		}
		k.Meta = mb
		if s.Alias != "" {
			if ui, ok := users[s.Alias]; ok {
				u := &r.res.Batch.Users[ui]
				u.Keys = append(u.Keys, k)
				if limit > 0 && (u.User.RequestLimit == 0 || limit < u.User.RequestLimit) {
					u.User.RequestLimit = limit
				}
				continue
			}
		}
		u := keys.ImportUser{Ref: e.ref, ExternalID: "key:" + fp}
		u.User.Name = "tyk " + fp[:8]
		if s.Alias != "" {
			u.ExternalID, u.User.Name = "alias:"+s.Alias, userName(s.Alias, u.User.Name)
			users[s.Alias] = len(r.res.Batch.Users)
		}
		u.User.RequestLimit, u.User.Tags = limit, k.Tags
		u.Keys = []keys.ImportKey{k}
		r.res.Batch.Users = append(r.res.Batch.Users, u)
	}
	return nil
}

// tail is the end of an id, enough to find it in a file, never a whole key.
func tail(id string) string {
	if len(id) <= 8 {
		return ""
	}
	return id[len(id)-4:]
}
