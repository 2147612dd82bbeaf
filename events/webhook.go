package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SecretPrefix starts every webhook signing secret.
const SecretPrefix = "whsec_"

// NewSecret returns a fresh signing secret: whsec_ and the base64 of 32
// random bytes.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("events: crypto/rand failed: " + err.Error())
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey returns the HMAC key of a whsec_ secret.
func secretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, errors.New("webhook secret: not a whsec_ secret")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 16 {
		return nil, errors.New("webhook secret: bad base64")
	}
	return key, nil
}

// Sign returns the webhook-signature value of body: "v1," and the base64
// of HMAC-SHA256(key, id "." timestamp "." body).
func Sign(secret, id string, timestamp int64, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, timestamp, body)), nil
}

// SignAll returns the webhook-signature value of body signed with each of
// secrets: the v1 signatures separated by single spaces, as Standard
// Webhooks verifiers split them. During a rotation's grace period a
// delivery is signed with the new secret and the old one, so a receiver
// holding either verifies it.
func SignAll(secrets []string, id string, timestamp int64, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("webhook secret: none to sign with")
	}
	var b strings.Builder
	for i, secret := range secrets {
		sig, err := Sign(secret, id, timestamp, body)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(sig)
	}
	return b.String(), nil
}

func mac(key []byte, id string, timestamp int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ErrSignature is returned by Verify for a missing, stale or wrong signature.
var ErrSignature = errors.New("webhook signature invalid")

// Verify checks the Standard Webhooks headers of a delivery against secret:
// the timestamp within tolerance of now and one of the space-separated v1
// signatures matching (in constant time).
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: missing header", ErrSignature)
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp", ErrSignature)
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp outside tolerance", ErrSignature)
	}
	want := mac(key, id, t, body)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no signature matches", ErrSignature)
}

// CheckURL validates a webhook URL: absolute http or https, with a host, no
// user info, no fragment, at most 2048 bytes.
func CheckURL(raw string) error {
	if len(raw) > 2048 {
		return errors.New("must be at most 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("must be a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an http or https URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("must name a host")
	}
	if u.User != nil {
		return errors.New("must not carry user info (put credentials elsewhere; deliveries are signed)")
	}
	if u.Fragment != "" {
		return errors.New("must not have a fragment")
	}
	return nil
}

// AddressPolicy says which addresses deliveries may connect to. It is
// checked on the address actually dialed, after DNS, so a name that
// resolves (or rebinds) to a refused address is refused too.
type AddressPolicy struct {
	// AllowPrivate allows loopback, private (RFC 1918, RFC 4193), link-local
	// (including cloud metadata at 169.254.169.254), CGNAT and unspecified
	// addresses. Default: false, only public unicast addresses.
	AllowPrivate bool
	// AllowLoopback allows loopback alone (tests, a receiver on the same
	// host). Default: false.
	AllowLoopback bool
}

// ErrRefusedAddress is returned when a delivery would connect to an
// address the AddressPolicy refuses.
var ErrRefusedAddress = errors.New("destination address refused by policy")

// cgnat is 100.64.0.0/10 (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Allows reports whether a connection to ip is allowed.
func (p AddressPolicy) Allows(ip netip.Addr) bool {
	ip = ip.Unmap()
	if p.AllowPrivate {
		return true
	}
	if ip.IsLoopback() {
		return p.AllowLoopback
	}
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

// control refuses connections to addresses the policy does not allow.
func (p AddressPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, address)
	}
	if !p.Allows(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, ap.Addr())
	}
	return nil
}

// NewHTTPClient returns the client deliveries go through: the policy
// checked on every dialed address, no proxy from the environment, no
// redirects followed (a redirect is a failed attempt), timeout per attempt.
func NewHTTPClient(p AddressPolicy, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, Control: p.control}
	tr := &http.Transport{
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// userAgent is sent with every delivery.
const userAgent = "keygate-webhooks/1"

// post sends one webhook attempt, signed with each of secrets, and returns
// the status (0 without an answer) and what went wrong.
func post(ctx context.Context, c *http.Client, target string, secrets []string, id string, now time.Time, body []byte) (int, error) {
	ts := now.Unix()
	sig, err := SignAll(secrets, id, ts, body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := c.Do(req)
	if err != nil {
		return 0, scrub(err, target)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// scrub keeps a transport error but drops the URL (its query may hold a
// receiver's token).
func scrub(err error, target string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return errors.New(strings.ReplaceAll(err.Error(), target, "<url>"))
}
