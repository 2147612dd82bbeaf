package keys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/big"
	"strings"
	"sync"
	"time"
)

// KeyPrefix starts every access key.
const KeyPrefix = "kg_"

// Sizes of the random parts of an access key. The secret carries 256 bits.
const (
	keyIDBytes     = 10 // 16 base32 characters
	keySecretBytes = 32 // 52 base32 characters, 256 bits
	// keyChecksumLen is the checksum at the end of a key's secret part:
	// CRC-32 (IEEE) of everything before it, 4 bytes as 7 base32 characters.
	keyChecksumLen = 7
)

// Access key formats. A key issued since checksums exist is
// kg_<16 id chars>_<52 secret chars><7 checksum chars>: its secret part is
// 59 characters long. A key issued before is kg_<16>_<52> and has none. The
// length tells them apart, so nothing about the old keys is weakened and a
// new key with a wrong checksum can never pass as an old one (its hash
// covers all 59 characters). Scanners match the new form with
//
//	\bkg_[a-z2-7]{16}_[a-z2-7]{59}\b
//
// and confirm a match offline with the checksum (KeyChecksumValid).
const (
	legacySecretLen = 52
	secretLen       = legacySecretLen + keyChecksumLen
)

// lowerBase32 has no '_' so an access key splits unambiguously.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// RandomToken returns n random bytes from crypto/rand as lower-case base32.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ panics itself).
		panic("keys: crypto/rand failed: " + err.Error())
	}
	return lowerBase32.EncodeToString(b)
}

// NewID returns a random public identifier (16 lower-case base32 characters).
func NewID() string { return RandomToken(keyIDBytes) }

// NewUserID returns a random decimal user id of 15 digits with no leading
// zero: below 2^53, so SDKs that type user ids as numbers keep it exact.
func NewUserID() string {
	lo := big.NewInt(100_000_000_000_000)
	span := big.NewInt(900_000_000_000_000)
	n, err := rand.Int(rand.Reader, span)
	if err != nil {
		panic("keys: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, lo).String()
}

// Hasher hashes access keys for storage: SHA-256, or HMAC-SHA256 keyed with
// the pepper when one is configured (a leaked store then cannot be
// brute-forced offline without the pepper as well).
type Hasher struct {
	pepper  []byte
	digests sync.Pool // of *digest
}

// NewHasher returns a Hasher; an empty pepper means plain SHA-256.
func NewHasher(pepper []byte) *Hasher {
	h := &Hasher{pepper: append([]byte(nil), pepper...)}
	h.digests.New = func() any {
		if len(h.pepper) == 0 {
			return &digest{h: sha256.New()}
		}
		return &digest{h: hmac.New(sha256.New, h.pepper)}
	}
	return h
}

// Sum returns the stored hash of a full access key string.
func (h *Hasher) Sum(key string) []byte {
	if len(h.pepper) == 0 {
		s := sha256.Sum256([]byte(key))
		return s[:]
	}
	m := hmac.New(sha256.New, h.pepper)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// Verify reports, in constant time, whether key hashes to stored. It does
// not allocate: digests are pooled.
func (h *Hasher) Verify(key string, stored []byte) bool {
	d := h.digests.Get().(*digest)
	d.h.Reset()
	if len(key) <= len(d.scratch) {
		// Copying into pooled scratch space avoids the []byte(key) allocation.
		n := copy(d.scratch[:], key)
		d.h.Write(d.scratch[:n])
		clear(d.scratch[:n])
	} else {
		_, _ = io.WriteString(d.h, key)
	}
	sum := d.h.Sum(d.buf[:0])
	ok := subtle.ConstantTimeCompare(sum, stored) == 1
	h.digests.Put(d)
	return ok
}

// digest is a reusable hash with room for its sum.
type digest struct {
	h       hash.Hash
	buf     [sha256.Size]byte
	scratch [128]byte
}

// ParseAccessKey splits kg_<id>_<secret> and returns the id. It does not
// allocate; ok is false for anything not shaped like a keygate key,
// including a key of the checksummed format whose checksum is wrong (a
// typo, a truncated copy), which is thus refused before any lookup.
func ParseAccessKey(s string) (id string, ok bool) {
	if !strings.HasPrefix(s, KeyPrefix) {
		return "", false
	}
	rest := s[len(KeyPrefix):]
	i := strings.IndexByte(rest, '_')
	if i <= 0 || i != lowerBase32.EncodedLen(keyIDBytes) {
		return "", false
	}
	secret := rest[i+1:]
	if len(secret) != legacySecretLen && len(secret) != secretLen {
		return "", false
	}
	for j := 0; j < len(rest); j++ {
		c := rest[j]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7' || c == '_' && j == i) {
			return "", false
		}
	}
	if len(secret) == secretLen && !checksumOK(s) {
		return "", false
	}
	return rest[:i], true
}

// KeyChecksumValid reports whether s is an access key of the checksummed
// format with a correct checksum (what a secret scanner checks).
func KeyChecksumValid(s string) bool {
	_, ok := ParseAccessKey(s)
	return ok && len(s) == len(KeyPrefix)+lowerBase32.EncodedLen(keyIDBytes)+1+secretLen
}

// checksumOK checks the last keyChecksumLen characters of s against the
// CRC-32 of the rest, without allocating.
func checksumOK(s string) bool {
	body := s[:len(s)-keyChecksumLen]
	var sum [keyChecksumLen]byte
	keyChecksum(sum[:], body)
	return s[len(body):] == string(sum[:])
}

// crcTables are the slicing-by-8 tables of CRC-32 (IEEE): crcString
// computes crc32.ChecksumIEEE of a string eight bytes a step, without the
// []byte conversion (an allocation on the request path) that crc32 needs.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		for k := 1; k < 8; k++ {
			t[k][i] = t[k-1][i]>>8 ^ t[0][t[k-1][i]&0xFF]
		}
	}
	return t
}()

// crcString is crc32.ChecksumIEEE([]byte(s)).
func crcString(s string) uint32 {
	t := &crcTables
	c := ^uint32(0)
	for len(s) >= 8 {
		c ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		c = t[0][s[7]] ^ t[1][s[6]] ^ t[2][s[5]] ^ t[3][s[4]] ^
			t[4][c>>24] ^ t[5][c>>16&0xFF] ^ t[6][c>>8&0xFF] ^ t[7][c&0xFF]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		c = t[0][byte(c)^s[i]] ^ c>>8
	}
	return ^c
}

// keyChecksum writes the checksum of body (7 base32 characters) to dst.
func keyChecksum(dst []byte, body string) {
	c := crcString(body)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	lowerBase32.Encode(dst, b[:])
}

// NewAccessKey generates an access key for a user in a tenant. It returns the
// full key, to be shown once, and the record to store (hash only).
func NewAccessKey(h *Hasher, userID, tenantID, name string, expiresAt time.Time) (plaintext string, k Key) {
	id := NewID()
	body := KeyPrefix + id + "_" + RandomToken(keySecretBytes)
	var sum [keyChecksumLen]byte
	keyChecksum(sum[:], body)
	plaintext = body + string(sum[:])
	return plaintext, Key{
		ID:        id,
		Name:      name,
		UserID:    userID,
		TenantID:  tenantID,
		Hash:      h.Sum(plaintext),
		Last4:     plaintext[len(plaintext)-4:],
		ExpiresAt: expiresAt.UTC(),
		Status:    KeyActive,
	}
}

// NewSession generates a console session token for the user of key k,
// valid until expiresAt. It returns the full token, to be shown once, and
// the record to store (hash only).
func NewSession(h *Hasher, k *Key, expiresAt time.Time) (plaintext string, s Session) {
	id := NewID()
	plaintext = SessionPrefix + id + "_" + RandomToken(keySecretBytes)
	return plaintext, Session{
		ID: id, UserID: k.UserID, KeyID: k.ID, TenantID: k.TenantID,
		Hash: h.Sum(plaintext), ExpiresAt: expiresAt.UTC(),
	}
}

// ParseSession splits kgs_<id>_<secret> and returns the id; ok is false for
// anything not shaped like a console session token.
func ParseSession(s string) (id string, ok bool) {
	rest, found := strings.CutPrefix(s, SessionPrefix)
	// Sessions carry no checksum: their secret is always the 52-character
	// form, whatever else ParseAccessKey takes.
	if !found || len(rest) != lowerBase32.EncodedLen(keyIDBytes)+1+lowerBase32.EncodedLen(keySecretBytes) {
		return "", false
	}
	return ParseAccessKey(KeyPrefix + rest)
}

// NewSigningSecret returns a fresh signing secret string: 32 random bytes,
// base64 (standard alphabet, padded), as wallee issues them.
func NewSigningSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("keys: crypto/rand failed: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(b)
}

// ValidateID checks an admin-chosen identifier: 1–64 characters of
// letters, digits, '-', '_', '.', ':' and '@'.
func ValidateID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("must be 1 to 64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:@", c) >= 0) {
			return fmt.Errorf("may contain only letters, digits and - _ . : @")
		}
	}
	return nil
}
