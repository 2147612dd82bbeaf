package auth

import (
	"crypto/sha512"
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
)

// benchVerify measures Detect + Verify on a request rebuilt cheaply per op.
func benchVerify(b *testing.B, build func() *http.Request, secrets []Secret, opt VerifyOptions) {
	b.Helper()
	if opt.Now.IsZero() {
		opt.Now = testNow
	}
	var d Detector
	r := build()
	if c, err := d.Detect(r); err != nil {
		b.Fatal(err)
	} else if _, err := c.Verify(r, secrets, opt); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := d.Detect(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Verify(r, secrets, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// The second secret matches, so each benchmark pays for two secrets.
var benchSecrets = []Secret{{ID: "old", Value: secretC}, {ID: "new", Value: secretA}}

func BenchmarkWalleeMAC(b *testing.B) {
	benchVerify(b, func() *http.Request {
		r := newReq("GET", "/api/transaction/read?spaceId=1&id=2", "")
		signWalleeMAC(r, "4711", secretA, testNow.Unix(), "/api/transaction/read?spaceId=1&id=2")
		return r
	}, benchSecrets, VerifyOptions{})
}

func BenchmarkWalleeJWT(b *testing.B) {
	benchVerify(b, func() *http.Request {
		r := newReq("GET", "/api/v2.0/spaces/1", "")
		r.Header.Set("Authorization", "Bearer "+makeJWT(`{"alg":"HS256","typ":"JWT","ver":1}`,
			walleeClaims("4711", testNow.Unix(), "GET", "/api/v2.0/spaces/1"), b64dec(secretA)))
		return r
	}, benchSecrets, VerifyOptions{})
}

func BenchmarkCavageHS2019(b *testing.B) {
	benchVerify(b, func() *http.Request {
		r := newReq("GET", "/v1/things?x=1", "")
		r.Header.Set("Signature", signCavage(r, "app", "hs2019", []string{"(request-target)", "(created)", "host"}, secretA, testNow.Unix(), 0))
		return r
	}, benchSecrets, VerifyOptions{})
}

func BenchmarkRFC9421(b *testing.B) {
	benchVerify(b, func() *http.Request {
		r := newReq("GET", "/v1/things?x=1", "")
		sign9421(r, "sig", []string{"@method", "@authority", "@path", "@query"}, `;created=`+strconv.FormatInt(testNow.Unix(), 10)+`;keyid="app"`, []byte(secretA))
		return r
	}, benchSecrets, VerifyOptions{})
}

func BenchmarkRFC9421ContentDigest(b *testing.B) {
	body := `{"hello": "world"}`
	benchVerify(b, func() *http.Request {
		r := newReq("POST", "/v1/things", body)
		sum := sha512.Sum512([]byte(body))
		r.Header.Set("Content-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
		sign9421(r, "sig", []string{"@method", "@path", "content-digest"}, `;created=`+strconv.FormatInt(testNow.Unix(), 10)+`;keyid="app"`, []byte(secretA))
		return r
	}, benchSecrets, VerifyOptions{})
}

func BenchmarkSigV4(b *testing.B) {
	benchVerify(b, func() *http.Request {
		r := newReq("GET", "/prod/orders?b=2&a=1", "")
		signV4(r, v4opts(secretA))
		return r
	}, benchSecrets, VerifyOptions{})
}

func BenchmarkDetectAccessKey(b *testing.B) {
	r := newReq("GET", "/x", "")
	r.Header.Set("X-Api-Key", "kg_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	var d Detector
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := d.Detect(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryReplayGuard(b *testing.B) {
	g := NewMemoryReplayGuard(1 << 16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g.remember(rkey(i&0xffff), 0, testNow)
			i++
		}
	})
}
