package module

import (
	"encoding/json"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
)

func init() {
	caddy.RegisterModule(LogEncoder{})
}

// LogEncoder is the `keygate` log format: Caddy's filter encoder with the
// fields that carry keygate credentials removed, so that an access log
// never holds a key or a signature. Caddy itself redacts only
// Authorization, Cookie and Set-Cookie; keygate's credentials also travel
// in X-Api-Key, Signature, Signature-Input, the wallee X-Mac-* headers and
// query parameters (api_key, X-Amz-Signature, X-Amz-Credential, …).
//
//	log {
//		format keygate
//	}
//
// Every field of Caddy's filter encoder (wrap, fields) works here too.
type LogEncoder struct {
	logging.FilterEncoder

	// Headers are further request headers to remove, such as a route's
	// key_header. X-Api-Key, Authorization, Proxy-Authorization,
	// Signature, Signature-Input, X-Mac-Value and X-Amz-Security-Token are
	// always removed.
	Headers []string `json:"headers,omitempty"`

	// Query are further query parameters to remove from the logged URI,
	// such as a route's key_query. api_key and the X-Amz-* credential
	// parameters are always removed.
	Query []string `json:"query,omitempty"`
}

// loggedCredentialHeaders are removed from every keygate-format log.
var loggedCredentialHeaders = []string{"Authorization", "Proxy-Authorization", "X-Api-Key", "Signature",
	"Signature-Input", "X-Mac-Value", "X-Amz-Security-Token"}

// loggedCredentialQuery are removed from the logged URI.
var loggedCredentialQuery = []string{"api_key", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"}

// encoderPool counts keygate log encoders in use, so that the app can warn
// about access logs that would write credentials.
var encoderPool = caddy.NewUsagePool()

const encoderPoolKey = "keygate.log_encoders"

// CaddyModule returns the Caddy module information.
func (LogEncoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.keygate",
		New: func() caddy.Module { return new(LogEncoder) },
	}
}

// Provision adds the credential filters (an operator's own filter for the
// same field wins) and provisions the filter encoder.
func (e *LogEncoder) Provision(ctx caddy.Context) error {
	if e.FieldsRaw == nil {
		e.FieldsRaw = make(map[string]json.RawMessage)
	}
	del := json.RawMessage(`{"filter":"delete"}`)
	for _, h := range append(append([]string(nil), loggedCredentialHeaders...), e.Headers...) {
		field := "request>headers>" + http.CanonicalHeaderKey(h)
		if _, ok := e.FieldsRaw[field]; !ok {
			e.FieldsRaw[field] = del
		}
	}
	if _, ok := e.FieldsRaw["request>uri"]; !ok {
		type action struct {
			Type      string `json:"type"`
			Parameter string `json:"parameter"`
		}
		var actions []action
		for _, q := range append(append([]string(nil), loggedCredentialQuery...), e.Query...) {
			actions = append(actions, action{"delete", q})
		}
		raw, err := json.Marshal(map[string]any{"filter": "query", "actions": actions})
		if err != nil {
			return err
		}
		e.FieldsRaw["request>uri"] = raw
	}
	_, _ = encoderPool.LoadOrStore(encoderPoolKey, struct{}{})
	return e.FilterEncoder.Provision(ctx)
}

// Cleanup releases the encoder's place in the usage count.
func (e *LogEncoder) Cleanup() error {
	_, err := encoderPool.Delete(encoderPoolKey)
	return err
}

// logEncoderInUse reports whether a keygate log encoder is loaded.
func logEncoderInUse() bool {
	refs, ok := encoderPool.References(encoderPoolKey)
	return ok && refs > 0
}

// UnmarshalCaddyfile sets up the encoder from Caddyfile tokens:
//
//	format keygate {
//		header <name>...
//		query <name>...
//		wrap <encoder> [{ … }]
//	}
func (e *LogEncoder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the format name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "header":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			e.Headers = append(e.Headers, args...)
		case "query":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			e.Query = append(e.Query, args...)
		case "wrap":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "caddy.logging.encoders."+name)
			if err != nil {
				return err
			}
			e.WrappedRaw = caddyconfig.JSONModuleObject(unm, "format", name, nil)
		default:
			return d.Errf("unrecognized keygate log format option '%s'", d.Val())
		}
	}
	return nil
}

var (
	_ caddy.Provisioner     = (*LogEncoder)(nil)
	_ caddy.CleanerUpper    = (*LogEncoder)(nil)
	_ caddyfile.Unmarshaler = (*LogEncoder)(nil)
)
