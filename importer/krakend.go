package importer

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/keys"
)

// krakendAPIKeys is KrakenD Enterprise's auth/api-keys component.
type krakendAPIKeys struct {
	Strategy   string `json:"strategy"`
	Identifier string `json:"identifier"`
	Hash       string `json:"hash"`
	Salt       string `json:"salt"`
	Keys       []struct {
		Key         string   `json:"key"`
		Roles       []string `json:"roles"`
		Description string   `json:"@description"`
	} `json:"keys"`
}

func (r *reader) krakend(data []byte) error {
	var cfg struct {
		ExtraConfig map[string]json.RawMessage `json:"extra_config"`
		Keys        json.RawMessage            `json:"keys"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("not a KrakenD configuration (JSON): %w", err)
	}
	raw := data
	if cfg.Keys == nil {
		var ok bool
		if raw, ok = cfg.ExtraConfig["auth/api-keys"]; !ok {
			return fmt.Errorf("no auth/api-keys in extra_config")
		}
	}
	var ak krakendAPIKeys
	if err := json.Unmarshal(raw, &ak); err != nil {
		return fmt.Errorf("auth/api-keys: %w", err)
	}
	if len(ak.Keys) > MaxEntries {
		return fmt.Errorf("the file has %d keys; at most %d per import", len(ak.Keys), MaxEntries)
	}
	scheme := ""
	switch ak.Hash {
	case "", "plain":
	case "fnv128":
		scheme = keys.HashFNV128
	case "sha1":
		scheme = keys.HashSHA1
	case "sha256":
		scheme = keys.HashSHA256
	default:
		return fmt.Errorf("auth/api-keys: hash %q is not one of plain, fnv128, sha1, sha256", clip(ak.Hash))
	}
	if scheme != "" && ak.Salt != "" {
		if len(ak.Salt) > 256 {
			return fmt.Errorf("auth/api-keys: the salt is longer than 256 bytes")
		}
		scheme += ":" + hex.EncodeToString([]byte(ak.Salt))
	} else if ak.Salt != "" {
		r.warn("auth/api-keys: salt is ignored with hash plain (as KrakenD does)")
	}
	if ak.Strategy == "query_string" {
		r.warn("auth/api-keys: strategy query_string: give the route key_query %s and foreign_keys", ak.Identifier)
	}
	users := map[string]int{}
	for i, e := range ak.Keys {
		ref := fmt.Sprintf("keys[%d]", i)
		if e.Key == "" {
			r.invalid(ref, "key", "no key")
			continue
		}
		fp := r.opts.Fingerprint("krakend\x00" + e.Key)
		k := keys.ImportKey{Ref: ref, ExternalID: fp, Name: "krakend " + fp[:8]}
		r.expire(&k, time.Time{})
		if scheme == "" {
			k.Plaintext = e.Key
		} else {
			ls, _ := keys.ParseLegacyScheme(scheme)
			sum, err := decodeDigest(e.Key, keys.DigestSize(ls.Name))
			if err != nil {
				r.invalid(ref, "key", "hash "+ak.Hash+": "+err.Error())
				continue
			}
			k.HashScheme, k.Hash = scheme, sum
		}
		roles := r.cleanRoles(ref+".roles", e.Roles)
		if e.Description != "" {
			if ui, ok := users[e.Description]; ok {
				u := &r.res.Batch.Users[ui]
				u.Keys = append(u.Keys, k)
				u.User.CustomerRoles = union(u.User.CustomerRoles, roles)
				continue
			}
		}
		u := keys.ImportUser{Ref: ref, ExternalID: "key:" + fp}
		u.User.Name = k.Name
		if e.Description != "" {
			u.ExternalID, u.User.Name = "description:"+e.Description, userName(e.Description, k.Name)
			users[e.Description] = len(r.res.Batch.Users)
		}
		u.User.CustomerRoles = roles
		u.Keys = []keys.ImportKey{k}
		r.res.Batch.Users = append(r.res.Batch.Users, u)
	}
	return nil
}
