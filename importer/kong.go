package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/keys"
)

// kongFile is the part of a decK state file keygate reads. Credentials,
// ACLs and plugins may sit under their consumer (decK dump) or at the top
// level with a consumer reference (Kong's declarative config).
type kongFile struct {
	FormatVersion string           `json:"_format_version"`
	Consumers     []kongConsumer   `json:"consumers"`
	KeyAuth       []kongCredential `json:"keyauth_credentials"`
	ACLs          []kongACL        `json:"acls"`
	Plugins       []kongPlugin     `json:"plugins"`
}

type kongConsumer struct {
	ID       string           `json:"id"`
	Username string           `json:"username"`
	CustomID string           `json:"custom_id"`
	Tags     []string         `json:"tags"`
	KeyAuth  []kongCredential `json:"keyauth_credentials"`
	ACLs     []kongACL        `json:"acls"`
	Plugins  []kongPlugin     `json:"plugins"`
}

type kongCredential struct {
	ID        string          `json:"id"`
	Key       string          `json:"key"`
	TTL       *float64        `json:"ttl"`
	Tags      []string        `json:"tags"`
	CreatedAt *float64        `json:"created_at"`
	Consumer  json.RawMessage `json:"consumer"`
}

type kongACL struct {
	Group    string          `json:"group"`
	Consumer json.RawMessage `json:"consumer"`
}

type kongPlugin struct {
	Name     string          `json:"name"`
	Enabled  *bool           `json:"enabled"`
	Config   map[string]any  `json:"config"`
	Consumer json.RawMessage `json:"consumer"`
	Route    json.RawMessage `json:"route"`
	Service  json.RawMessage `json:"service"`
}

// kongPeriods are the rate-limiting plugin's windows.
var kongPeriods = []struct {
	name   string
	period time.Duration
}{
	{"second", time.Second}, {"minute", time.Minute}, {"hour", time.Hour},
	{"day", 24 * time.Hour}, {"month", 30 * 24 * time.Hour}, {"year", 365 * 24 * time.Hour},
}

// consumerRef reads a reference to a consumer: its username or id as a
// string, or an object {"id"} / {"username"}.
func consumerRef(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	if json.Unmarshal(raw, &o) == nil {
		if o.ID != "" {
			return o.ID
		}
		return o.Username
	}
	return ""
}

func (r *reader) kong(data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("not a decK state file (YAML or JSON): %w", err)
	}
	var f kongFile
	if err := json.Unmarshal(js, &f); err != nil {
		return fmt.Errorf("not a decK state file: %w", err)
	}
	switch f.FormatVersion {
	case "1.1", "2.1", "3.0":
	case "":
		return fmt.Errorf("not a decK state file: no _format_version")
	default:
		return fmt.Errorf("decK _format_version %q is not supported (1.1, 2.1 and 3.0 are)", f.FormatVersion)
	}
	if len(f.Consumers) > MaxEntries {
		return fmt.Errorf("the file has %d consumers; at most %d per import", len(f.Consumers), MaxEntries)
	}
	// Attach top-level entities to their consumers (by id or username).
	byRef := map[string]int{}
	for i, c := range f.Consumers {
		for _, ref := range []string{c.ID, c.Username} {
			if ref != "" {
				byRef[ref] = i
			}
		}
	}
	attach := func(kind string, i int, raw json.RawMessage) (int, bool) {
		ref := consumerRef(raw)
		ci, ok := byRef[ref]
		if !ok {
			r.invalid(fmt.Sprintf("%s[%d]", kind, i), "key", "its consumer "+fmt.Sprintf("%q", clip(ref))+" is not in the file")
		}
		return ci, ok
	}
	for i, k := range f.KeyAuth {
		if ci, ok := attach("keyauth_credentials", i, k.Consumer); ok {
			f.Consumers[ci].KeyAuth = append(f.Consumers[ci].KeyAuth, k)
		}
	}
	for i, a := range f.ACLs {
		if ci, ok := attach("acls", i, a.Consumer); ok {
			f.Consumers[ci].ACLs = append(f.Consumers[ci].ACLs, a)
		}
	}
	for i, p := range f.Plugins {
		if consumerRef(p.Consumer) == "" || p.Name != "rate-limiting" {
			continue
		}
		if ci, ok := byRef[consumerRef(p.Consumer)]; ok {
			f.Consumers[ci].Plugins = append(f.Consumers[ci].Plugins, p)
		} else {
			r.warn("plugins[%d]: its consumer is not in the file", i)
		}
	}

	for i, c := range f.Consumers {
		ref := fmt.Sprintf("consumers[%d]", i)
		ext := c.CustomID
		if ext == "" {
			ext = c.Username
		}
		if ext == "" {
			ext = c.ID
		}
		if ext == "" {
			r.invalid(ref, "user", "a consumer needs a username or custom_id")
			continue
		}
		u := keys.ImportUser{Ref: ref, ExternalID: ext}
		u.User.Name = userName(c.Username, c.CustomID)
		u.User.Tags = r.cleanTags(ref, c.Tags)
		meta := map[string]string{}
		for k, v := range map[string]string{"kongId": c.ID, "username": c.Username, "customId": c.CustomID} {
			if v != "" {
				meta[k] = v
			}
		}
		u.User.Meta, _ = json.Marshal(meta)
		var groups []string
		for _, a := range c.ACLs {
			groups = append(groups, a.Group)
		}
		u.User.CustomerRoles = r.cleanRoles(ref+".acls", groups)
		u.User.RequestLimit = r.kongLimit(ref, c.Plugins)
		for j, cred := range c.KeyAuth {
			kref := fmt.Sprintf("%s.keyauth_credentials[%d]", ref, j)
			if cred.Key == "" {
				r.invalid(kref, "key", "no key")
				continue
			}
			k := keys.ImportKey{Ref: kref, ExternalID: cred.ID, Plaintext: cred.Key, Tags: r.cleanTags(kref, cred.Tags)}
			if cred.ID != "" {
				k.Name = "kong " + clip(cred.ID)
			} else {
				k.Name = fmt.Sprintf("kong key %d", j+1)
			}
			r.expire(&k, time.Time{})
			if cred.TTL != nil && *cred.TTL > 0 {
				// Kong counts a TTL from the credential's creation; a dump
				// without created_at leaves the import's time, which a later
				// import of the same file does not move.
				if cred.CreatedAt != nil && *cred.CreatedAt > 0 {
					k.ExpiresAt, k.ExpiresDefault = time.Unix(int64(*cred.CreatedAt), 0).Add(time.Duration(*cred.TTL)*time.Second), false
				} else {
					k.ExpiresAt = r.opts.Now.Add(time.Duration(*cred.TTL) * time.Second)
				}
			}
			u.Keys = append(u.Keys, k)
		}
		r.res.Batch.Users = append(r.res.Batch.Users, u)
	}
	return nil
}

// kongLimit maps a consumer's rate-limiting plugin to a request limit.
func (r *reader) kongLimit(ref string, plugins []kongPlugin) int64 {
	var ls []int64
	for j, p := range plugins {
		pref := fmt.Sprintf("%s.plugins[%d]", ref, j)
		if p.Name != "rate-limiting" {
			r.warn("%s: plugin %q not imported", pref, clip(p.Name))
			continue
		}
		if p.Enabled != nil && !*p.Enabled {
			r.warn("%s: rate-limiting is disabled: not imported", pref)
			continue
		}
		for _, per := range kongPeriods {
			v, ok := p.Config[per.name].(float64)
			if !ok || v <= 0 {
				continue
			}
			if l, ok := r.limit(v, per.period); ok {
				ls = append(ls, l)
			} else {
				r.warn("%s: %s limit %v not imported: keygate limits per %s window", pref, per.name, v, r.opts.Window)
			}
		}
	}
	return strictest(ls)
}
