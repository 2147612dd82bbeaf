package events

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/keygate/keygate/keys"
)

// Mail is one plain-text e-mail.
type Mail struct {
	To      string
	Subject string
	Body    string
	// MessageID is the Message-ID without angle brackets; the same event
	// to the same address keeps it across attempts, so a mailbox that got
	// it twice can tell.
	MessageID string
}

// Mailer sends e-mail.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// SMTP connection security.
const (
	// SMTPStartTLS: plain connection upgraded with STARTTLS, which the
	// server must offer (mandatory, not opportunistic). The default.
	SMTPStartTLS = "starttls"
	// SMTPTLS: TLS from the first byte (submissions on port 465).
	SMTPTLS = "tls"
	// SMTPNone: no TLS (a relay on the same host only).
	SMTPNone = "none"
)

// SMTPConfig configures an SMTP mailer.
type SMTPConfig struct {
	// Address is host:port of the submission server.
	Address string
	// Username and Password authenticate (SMTP AUTH, the strongest
	// mechanism both sides support); none when Username is empty.
	Username string
	Password string
	// From is the sender, e.g. "keygate <noreply@example.com>".
	From string
	// Security is starttls (default), tls or none.
	Security string
	// TLSConfig verifies the server (default: system roots, the host of
	// Address as the name).
	TLSConfig *tls.Config
	// Timeout bounds one delivery (connect, TLS, AUTH, DATA). Default: 30s.
	Timeout time.Duration
}

// SMTPMailer sends mail through one SMTP server. It is safe for
// concurrent use: each Send opens its own connection.
type SMTPMailer struct {
	cfg  SMTPConfig
	host string
	port int
}

// NewSMTP checks cfg and returns the mailer; it does no network I/O.
func NewSMTP(cfg SMTPConfig) (*SMTPMailer, error) {
	host, portStr, err := net.SplitHostPort(cfg.Address)
	if err != nil || host == "" {
		return nil, fmt.Errorf("smtp address %q: must be host:port", cfg.Address)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("smtp address %q: bad port", cfg.Address)
	}
	switch cfg.Security {
	case "":
		cfg.Security = SMTPStartTLS
	case SMTPStartTLS, SMTPTLS, SMTPNone:
	default:
		return nil, fmt.Errorf("smtp security %q: must be starttls, tls or none", cfg.Security)
	}
	if cfg.From == "" {
		return nil, errors.New("smtp: a from address is required")
	}
	if err := mail.NewMsg().From(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp from %q: %w", cfg.From, err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Username == "" && cfg.Password != "" {
		return nil, errors.New("smtp: a password needs a username")
	}
	return &SMTPMailer{cfg: cfg, host: host, port: port}, nil
}

// Send delivers m.
func (s *SMTPMailer) Send(ctx context.Context, m Mail) error {
	msg := mail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	if m.MessageID != "" {
		msg.SetMessageIDWithValue(m.MessageID)
	} else {
		msg.SetMessageID()
	}
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(mail.TypeTextPlain, m.Body)

	opts := []mail.Option{mail.WithPort(s.port), mail.WithTimeout(s.cfg.Timeout)}
	tc := s.cfg.TLSConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tc = tc.Clone()
	if tc.ServerName == "" {
		tc.ServerName = s.host
	}
	opts = append(opts, mail.WithTLSConfig(tc))
	switch s.cfg.Security {
	case SMTPTLS:
		opts = append(opts, mail.WithSSL())
	case SMTPNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password))
	}
	c, err := mail.NewClient(s.host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("smtp %s: %w", s.cfg.Address, err)
	}
	return nil
}

// eventData is what the e-mail texts read from an event's data.
type eventData struct {
	Key *keys.KeyInfo `json:"key"`
}

// Compose writes the e-mail for event e: what happened, which key, when it
// expires, what to do.
func Compose(e keys.Event, to string) Mail {
	var d eventData
	_ = json.Unmarshal(e.Data, &d)
	var all map[string]any
	_ = json.Unmarshal(e.Data, &all)
	var what, todo string
	keyName := ""
	if d.Key == nil {
		d.Key = &keys.KeyInfo{}
	}
	if d.Key.ID != "" {
		keyName = fmt.Sprintf("%q (%s) of user %s", d.Key.Name, d.Key.Masked, d.Key.UserID)
	}
	when := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }
	subject := "[keygate] " + e.Type
	switch e.Type {
	case keys.EventKeyExpiring:
		left := time.Until(d.Key.ExpiresAt).Round(time.Hour)
		subject = fmt.Sprintf("[keygate] Access key %q expires on %s", d.Key.Name, when(d.Key.ExpiresAt))
		what = fmt.Sprintf("The access key %s in tenant %s expires on %s (in about %s).", keyName, e.Tenant, when(d.Key.ExpiresAt), humanDuration(left))
		todo = fmt.Sprintf("Create a new key before then and move the clients to it, or replace this one with a grace period so both work meanwhile:\n  POST /v1/users/%s/keys/%s/replace   {\"gracePeriod\":\"72h\"}\nOr move its expiry: PATCH /v1/users/%s/keys/%s {\"expiresAt\":\"…\"}.", d.Key.UserID, d.Key.ID, d.Key.UserID, d.Key.ID)
	case keys.EventKeyExpired:
		subject = fmt.Sprintf("[keygate] Access key %q has expired", d.Key.Name)
		what = fmt.Sprintf("The access key %s in tenant %s expired on %s; requests with it are refused.", keyName, e.Tenant, when(d.Key.ExpiresAt))
		todo = fmt.Sprintf("Issue a new key: POST /v1/users/%s/keys (or keygate keys create --user %s).", d.Key.UserID, d.Key.UserID)
	case keys.EventKeyLeaked:
		subject = fmt.Sprintf("[keygate] Access key %q was found in public", d.Key.Name)
		what = fmt.Sprintf("The access key %s in tenant %s was reported leaked (%v, %v). Action taken: %v.", keyName, e.Tenant, all["url"], all["source"], all["action"])
		todo = fmt.Sprintf("Remove it from where it was published, issue a new key (POST /v1/users/%s/keys) and, if it was only flagged, revoke it: DELETE /v1/users/%s/keys/%s.", d.Key.UserID, d.Key.UserID, d.Key.ID)
	case keys.EventKeyCreated, keys.EventKeyReplaced, keys.EventKeyRevoked, keys.EventKeyUpdated:
		subject = fmt.Sprintf("[keygate] %s: access key %q", e.Type, d.Key.Name)
		what = fmt.Sprintf("%s: the access key %s in tenant %s (status %s, expires %s).", e.Type, keyName, e.Tenant, d.Key.Status, when(d.Key.ExpiresAt))
		todo = "Nothing, if you expected this change. Otherwise check the user's history: GET /v1/users/" + d.Key.UserID + "/history."
	case keys.EventRateLimitApproaching, keys.EventRateLimitExceeded:
		subject = fmt.Sprintf("[keygate] %s for user %v", e.Type, all["userId"])
		what = fmt.Sprintf("User %v in tenant %s has used %v of its %v requests per %v (%v).", all["userId"], e.Tenant, all["used"], all["limit"], all["window"], e.Type)
		todo = "Spread the requests out, or raise the user's requestLimit: PATCH /v1/users/<id> {\"requestLimit\": …}."
	case keys.EventAuthFailures:
		subject = fmt.Sprintf("[keygate] %v failed authentications for %v", all["failures"], e.Subject)
		what = fmt.Sprintf("%v failed authentications for %s from %v client addresses within %v.", all["failures"], e.Subject, all["clientIPs"], all["window"])
		todo = "If these are not your clients, the key id may be known to someone: replace the key."
	default:
		what = fmt.Sprintf("%s: %s in tenant %s.", e.Type, e.Subject, e.Tenant)
		todo = "Nothing, if you expected this change."
	}
	var b strings.Builder
	b.WriteString(what)
	b.WriteString("\n\nWhat to do: ")
	b.WriteString(todo)
	b.WriteString("\n\nDetails:\n")
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, _ := json.Marshal(all[k])
		fmt.Fprintf(&b, "  %s: %s\n", k, v)
	}
	fmt.Fprintf(&b, "\nEvent %s (%s) at %s, by %s.\n-- \nkeygate; this address is subscribed to %s in keygate's notifications.\n",
		e.ID, e.Type, when(e.Time), e.Actor, e.Type)
	return Mail{To: to, Subject: subject, Body: b.String(), MessageID: e.ID + "." + hashAddr(to) + "@keygate"}
}

func humanDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.Itoa(int(d.Hours()/24+0.5)) + " days"
	}
	if d >= time.Hour {
		return strconv.Itoa(int(d.Hours()+0.5)) + " hours"
	}
	return "less than an hour"
}

// hashAddr is a short stable token for an address (the Message-ID must not
// spell it out).
func hashAddr(a string) string {
	return strings.TrimPrefix(keys.EventID("mail", strings.ToLower(a)), "evt_")[:10]
}
