package module

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(LogEncoder{})
}

// LogEncoder is the `keygate` log format: Caddy's filter encoder that
// first removes from every logged request (the "request" field of access
// and error logs) each header and query parameter that can carry a keygate
// credential, in every spelling keygate reads or strips, so that a log
// never holds a key or a signature. Caddy itself redacts only
// Authorization, Proxy-Authorization, Cookie and Set-Cookie, by their
// canonical names; keygate's credentials also travel in X-Api-Key (or a
// route's key_header), Signature, Signature-Input, the wallee X-Mac-*
// headers and query parameters (api_key or a route's key_query,
// X-Amz-Signature, X-Amz-Credential, …).
//
// Removed headers, compared case-insensitively and with '_' for '-' (the
// spellings that CGI, PHP and some proxies treat as the same header):
// Authorization, Proxy-Authorization, X-Api-Key, Signature,
// Signature-Input, X-Amz-Security-Token, every X-Mac-* header, the
// key_header of every keygate route of the running configuration, and
// those named in Headers. Removed query parameters, compared
// case-insensitively after decoding: api_key, every X-Amz-* parameter, the
// key_query of every keygate route, and those named in Query.
//
//	log {
//		format keygate
//	}
//
// Every field of Caddy's filter encoder (wrap, fields) works here too.
type LogEncoder struct {
	logging.FilterEncoder

	// Headers are further request headers to remove. Default: none (a
	// route's key_header is removed without being named here).
	Headers []string `json:"headers,omitempty"`

	// Query are further query parameters to remove from the logged URI.
	// Default: none (a route's key_query is removed without being named
	// here).
	Query []string `json:"query,omitempty"`
}

// loggedCredentialHeaders are removed from every keygate-format log, as are
// every X-Mac-* header and the routes' key headers.
var loggedCredentialHeaders = []string{"Authorization", "Proxy-Authorization", "X-Api-Key", "Signature",
	"Signature-Input", "X-Amz-Security-Token"}

// loggedCredentialQuery are removed from the logged URI, as are every
// X-Amz-* parameter and the routes' key query parameters.
var loggedCredentialQuery = []string{"api_key"}

// encoderPool counts keygate log encoders in use, so that the app can warn
// about access logs that would write credentials.
var encoderPool = caddy.NewUsagePool()

const encoderPoolKey = "keygate.log_encoders"

// routeCredentials holds the key_header ("h:<name>") and key_query
// ("q:<name>") of every provisioned keygate route, for the log encoders,
// which are provisioned before the routes and read it as they encode.
var routeCredentials = caddy.NewUsagePool()

// CaddyModule returns the Caddy module information.
func (LogEncoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.keygate",
		New: func() caddy.Module { return new(LogEncoder) },
	}
}

// Provision provisions the filter encoder.
func (e *LogEncoder) Provision(ctx caddy.Context) error {
	_, _ = encoderPool.LoadOrStore(encoderPoolKey, struct{}{})
	return e.FilterEncoder.Provision(ctx)
}

// Cleanup releases the encoder's place in the usage count.
func (e *LogEncoder) Cleanup() error {
	_, err := encoderPool.Delete(encoderPoolKey)
	return err
}

// Clone implements zapcore.Encoder; the clone scrubs requests too (zap
// clones the encoder for the fields a logger is created With, which is how
// Caddy adds the request to its access and error loggers).
func (e *LogEncoder) Clone() zapcore.Encoder {
	fe, ok := e.FilterEncoder.Clone().(logging.FilterEncoder)
	if !ok {
		// Not what Caddy's filter encoder returns today; scrubbing must
		// not depend on it, so keep wrapping whatever it is.
		return &scrubbingEncoder{Encoder: e.FilterEncoder.Clone(), e: e}
	}
	return &LogEncoder{FilterEncoder: fe, Headers: e.Headers, Query: e.Query}
}

// AddObject implements zapcore.ObjectEncoder, scrubbing a request.
func (e *LogEncoder) AddObject(key string, m zapcore.ObjectMarshaler) error {
	sm, _ := e.scrub(m)
	return e.FilterEncoder.AddObject(key, sm)
}

// EncodeEntry implements zapcore.Encoder, scrubbing a request among fields.
func (e *LogEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	return e.FilterEncoder.EncodeEntry(ent, e.scrubFields(fields))
}

// scrubbingEncoder is a clone that is not a FilterEncoder value.
type scrubbingEncoder struct {
	zapcore.Encoder
	e *LogEncoder
}

func (s *scrubbingEncoder) Clone() zapcore.Encoder {
	return &scrubbingEncoder{Encoder: s.Encoder.Clone(), e: s.e}
}

func (s *scrubbingEncoder) AddObject(key string, m zapcore.ObjectMarshaler) error {
	sm, _ := s.e.scrub(m)
	return s.Encoder.AddObject(key, sm)
}

func (s *scrubbingEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	return s.Encoder.EncodeEntry(ent, s.e.scrubFields(fields))
}

// scrubFields returns fields with each logged request scrubbed (fields
// itself when there is none to scrub).
func (e *LogEncoder) scrubFields(fields []zapcore.Field) []zapcore.Field {
	var out []zapcore.Field
	for i, f := range fields {
		if f.Type != zapcore.ObjectMarshalerType {
			continue
		}
		m, ok := f.Interface.(zapcore.ObjectMarshaler)
		if !ok {
			continue
		}
		if sm, changed := e.scrub(m); changed {
			if out == nil {
				out = append([]zapcore.Field(nil), fields...)
			}
			out[i].Interface = sm
		}
	}
	if out == nil {
		return fields
	}
	return out
}

// scrub returns m, or for a logged request that carries a credential
// header or query parameter, a copy of it without them (and true).
func (e *LogEncoder) scrub(m zapcore.ObjectMarshaler) (zapcore.ObjectMarshaler, bool) {
	lr, ok := m.(caddyhttp.LoggableHTTPRequest)
	if !ok || lr.Request == nil {
		return m, false
	}
	r := lr.Request
	names := e.credentialNames()
	dirty := false
	for k := range r.Header {
		if names.header(k) {
			dirty = true
			break
		}
	}
	uri, query := scrubLoggedURI(r.RequestURI, names.query)
	if !dirty && !query {
		return m, false
	}
	cp := *r
	if dirty {
		cp.Header = make(http.Header, len(r.Header))
		for k, v := range r.Header {
			if !names.header(k) {
				cp.Header[k] = v
			}
		}
	}
	cp.RequestURI = uri
	lr.Request = &cp
	return lr, true
}

// credentialSet is what a keygate log removes.
type credentialSet struct {
	headers, queries []string
}

// credentialNames collects the names to remove: the fixed ones, the
// encoder's own, and those of the routes of the running configuration.
func (e *LogEncoder) credentialNames() credentialSet {
	c := credentialSet{
		headers: append(append(make([]string, 0, len(loggedCredentialHeaders)+len(e.Headers)+2), loggedCredentialHeaders...), e.Headers...),
		queries: append(append(make([]string, 0, len(loggedCredentialQuery)+len(e.Query)+2), loggedCredentialQuery...), e.Query...),
	}
	routeCredentials.Range(func(k, _ any) bool {
		name, _ := k.(string)
		switch {
		case strings.HasPrefix(name, "h:"):
			c.headers = append(c.headers, name[2:])
		case strings.HasPrefix(name, "q:"):
			c.queries = append(c.queries, name[2:])
		}
		return true
	})
	return c
}

// header reports whether a request header name is a credential's.
func (c credentialSet) header(name string) bool {
	if len(name) > len("x-mac-") && sameHeaderName(name[:len("x-mac-")], "x-mac-") {
		return true
	}
	for _, h := range c.headers {
		if sameHeaderName(name, h) {
			return true
		}
	}
	return false
}

// query reports whether a decoded query parameter name is a credential's.
func (c credentialSet) query(name string) bool {
	if len(name) >= len("x-amz-") && strings.EqualFold(name[:len("x-amz-")], "x-amz-") {
		return true
	}
	for _, q := range c.queries {
		if strings.EqualFold(name, q) {
			return true
		}
	}
	return false
}

// scrubLoggedURI returns uri without the query parameters whose name,
// decoded ('+' as space, %XX; an undecodable name as sent), drop reports,
// the others kept as sent; and whether it removed any.
func scrubLoggedURI(uri string, drop func(string) bool) (string, bool) {
	path, query, ok := strings.Cut(uri, "?")
	if !ok || query == "" {
		return uri, false
	}
	var b strings.Builder
	removed, first := false, true
	for part := range strings.SplitSeq(query, "&") {
		k, _, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if drop(k) {
			removed = true
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(part)
	}
	if !removed {
		return uri, false
	}
	return path + "?" + b.String(), true
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
	_ zapcore.Encoder       = (*LogEncoder)(nil)
	_ zapcore.Encoder       = (*scrubbingEncoder)(nil)
)
