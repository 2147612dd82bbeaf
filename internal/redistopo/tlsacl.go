package redistopo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ACLUser is the restricted user of StartTLS.
const ACLUser = "keygate"

// KeygateACL is the ACL rule of a Redis user that can do everything keygate
// does under key prefix prefix (its store, rate limiter and replay guard) and
// nothing else, in the syntax of an ACL file or ACL SETUSER after the user
// name. The password is left to the operator (">secret" or "#<sha256>").
// cluster adds the commands a cluster client needs to discover the slots.
//
// The commands: GET, MGET, SET, DEL, ZADD, ZREM, ZCARD, ZSCORE, ZRANGE and
// ZREVRANGE for the store's records and indexes; WATCH, UNWATCH, MULTI, EXEC
// and DISCARD for its transactions; WAIT and ROLE to have an admin write on a
// replica before it is acknowledged; PUBLISH, SUBSCRIBE and UNSUBSCRIBE for
// the invalidation channel; EVALSHA and EVAL for the limiter's script, and the
// commands the script itself calls (HMGET, HGETALL, HSET, HINCRBY, HDEL,
// PEXPIRE, TIME); PING, HELLO and AUTH for the connection
// (SELECT only with a non-zero db).
func KeygateACL(prefix string, cluster bool) string {
	cmds := []string{
		"+ping", "+hello", "+auth",
		"+get", "+mget", "+set", "+del",
		"+zadd", "+zrem", "+zcard", "+zscore", "+zrange", "+zrevrange",
		"+watch", "+unwatch", "+multi", "+exec", "+discard", "+wait", "+role",
		"+publish", "+subscribe", "+unsubscribe",
		"+evalsha", "+eval", "+hmget", "+hgetall", "+hset", "+hincrby", "+hdel", "+pexpire", "+time",
	}
	if cluster {
		cmds = append(cmds, "+cluster|slots", "+cluster|shards", "+command")
	}
	return "resetkeys resetchannels ~" + prefix + "* &" + prefix + "* -@all " + strings.Join(cmds, " ")
}

// TLSServer is a redis-server that only listens with TLS, requires a client
// certificate signed by its CA, and has the ACL user ACLUser (rule
// KeygateACL for prefix "keygate:") next to an administrator.
type TLSServer struct {
	*Node
	// Password of ACLUser.
	Password string
	// CAFile, CertFile and KeyFile are PEM files of the CA and of a client
	// certificate; ServerName is the name in the server's certificate.
	CAFile, CertFile, KeyFile string
	ServerName                string
	// ClientTLS is a client configuration with those files.
	ClientTLS *tls.Config
}

// StartTLS generates a CA and server and client certificates and starts the
// server with TLS on a free port (no plain-text port) and the ACL users.
func StartTLS(t testing.TB) *TLSServer {
	t.Helper()
	need(t, "redis-server")
	s := &TLSServer{Password: "kg-" + strconv.FormatInt(time.Now().UnixNano(), 36), ServerName: "redis.keygate.test"}
	adminPass := "admin-" + s.Password
	s.Node = startNode(t, false, func(n *Node) {
		pki, err := newPKI(n.Dir, s.ServerName)
		if err != nil {
			t.Fatalf("generating certificates: %v", err)
		}
		s.CAFile, s.CertFile, s.KeyFile = pki.caFile, pki.clientCert, pki.clientKey
		s.ClientTLS = pki.client
		conf := filepath.Join(n.Dir, "redis.conf")
		body := fmt.Sprintf(`port 0
tls-port %d
bind 127.0.0.1
dir %s
save ""
appendonly no
tls-cert-file %s
tls-key-file %s
tls-ca-cert-file %s
tls-auth-clients yes
user default off
user admin on >%s ~* &* +@all
user %s on >%s %s
`, n.Port, n.Dir, pki.serverCert, pki.serverKey, pki.caFile, adminPass, ACLUser, s.Password, KeygateACL("keygate:", false))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("writing redis.conf: %v", err)
		}
		n.args = []string{conf}
		n.tls = s.ClientTLS
		n.auth = [2]string{"admin", adminPass}
	})
	return s
}

// pki is a generated CA with a server and a client certificate.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	client                                               *tls.Config
}

// newPKI writes the PEM files to dir.
func newPKI(dir, serverName string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keygate test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p := &pki{
		caFile:     filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server.key"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client.key"),
	}
	if err := writePEM(p.caFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, certFile, keyFile string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{serverName}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("%s certificate: %w", cn, err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyFile, "PRIVATE KEY", kder)
	}
	if err := leaf(2, serverName, x509.ExtKeyUsageServerAuth, p.serverCert, p.serverKey); err != nil {
		return nil, err
	}
	if err := leaf(3, "keygate", x509.ExtKeyUsageClientAuth, p.clientCert, p.clientKey); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	p.client = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: serverName}
	return p, nil
}

func writePEM(path, typ string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
