package module

import (
	"net"
	"reflect"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Caddy's admin endpoint carries keygate's admin.api.keygate routes, which
// trust every caller as a superadmin (Caddy's model: whoever reaches the
// admin endpoint owns the server). On a Unix socket with mode 0600 or on
// loopback only local users and processes reach it; on any other TCP
// address, everyone who can route to it can create tenants and
// superadmins without a key. keygate says so at every config load.

// warnAdminEndpoint logs a warning when the admin endpoint of the config
// being loaded (ctx) listens on TCP on an address that is not loopback.
func (a *App) warnAdminEndpoint(ctx caddy.Context) {
	listen, ok := adminListen(ctx)
	if !ok {
		a.logger.Debug("cannot read the admin endpoint's address from this Caddy version: not checking that it is local")
		return
	}
	if listen == "" {
		return // disabled
	}
	if why := exposedAdmin(caddy.NewReplacer().ReplaceAll(listen, "")); why != "" {
		a.logger.Warn("Caddy's admin endpoint listens on "+why+": anyone who reaches it can create tenants, "+
			"superadmins and keys through keygate's admin.api.keygate routes, without a key; "+
			"use a Unix socket (admin unix//run/keygate/admin.sock|0600) or a loopback address (admin localhost:2019)",
			zap.String("admin", listen))
	}
}

// adminListen returns the admin endpoint's listen address in the config
// that ctx provisions (Caddy's default when the config names none; ""
// when the endpoint is disabled), and false when it cannot tell. Caddy
// exposes that config to no module, so this reads the context's
// unexported cfg field with reflection (reading only); a Caddy that
// renamed it makes ok false, which TestAdminListenReadable notices.
func adminListen(ctx caddy.Context) (listen string, ok bool) {
	cfg := reflect.ValueOf(ctx).FieldByName("cfg")
	if !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.IsNil() {
		return "", false
	}
	adm := cfg.Elem().FieldByName("Admin")
	if !adm.IsValid() || adm.Kind() != reflect.Pointer {
		return "", false
	}
	if adm.IsNil() {
		return caddy.DefaultAdminListen, true
	}
	disabled, addr := adm.Elem().FieldByName("Disabled"), adm.Elem().FieldByName("Listen")
	if disabled.Kind() != reflect.Bool || addr.Kind() != reflect.String {
		return "", false
	}
	switch {
	case disabled.Bool():
		return "", true
	case addr.String() == "":
		return caddy.DefaultAdminListen, true
	}
	return addr.String(), true
}

// exposedAdmin says how the admin address listen is reachable from other
// hosts ("TCP on every interface", "TCP on 10.0.0.5:2019"), or "" when it
// is a Unix socket, a socket handed over by the service manager, or
// loopback. A host name other than localhost counts as exposed: keygate
// does not resolve names at provision.
func exposedAdmin(listen string) string {
	na, err := caddy.ParseNetworkAddress(listen)
	if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() {
		return ""
	}
	host := na.Host
	if host == "" {
		return "TCP on every interface (" + listen + ")"
	}
	if strings.EqualFold(host, "localhost") {
		return ""
	}
	if ip := net.ParseIP(strings.Split(host, "%")[0]); ip != nil {
		if ip.IsLoopback() {
			return ""
		}
		if ip.IsUnspecified() {
			return "TCP on every interface (" + listen + ")"
		}
	}
	return "TCP on " + na.JoinHostPort(0) + ", which is not a loopback address"
}
