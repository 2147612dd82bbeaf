package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MasterKeySize is the length of the master key: AES-256.
const MasterKeySize = 32

// ErrWrongMasterKey: stored ciphertext does not open with the configured master key.
var ErrWrongMasterKey = errors.New("master key does not match the stored data")

// Sealer encrypts signing secrets and private keys with AES-256-GCM under the
// master key. The associated data binds each ciphertext to its owner, so a
// sealed value copied onto another record does not open.
type Sealer struct {
	aead cipher.AEAD
}

// ParseMasterKey decodes a base64 (standard or URL alphabet, padded or not)
// master key of exactly 32 bytes.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != MasterKeySize {
				return nil, fmt.Errorf("master key must be %d bytes, got %d", MasterKeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("master key is not valid base64")
}

// NewMasterKey returns a fresh random master key, base64-encoded.
func NewMasterKey() string {
	b := make([]byte, MasterKeySize)
	if _, err := rand.Read(b); err != nil {
		panic("keys: crypto/rand failed: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(b)
}

// NewSealer returns a Sealer for a 32-byte master key.
func NewSealer(masterKey []byte) (*Sealer, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("master key must be %d bytes", MasterKeySize)
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("creating cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating GCM: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad; the result is nonce || ciphertext.
func (s *Sealer) Seal(plaintext []byte, aad string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("keys: crypto/rand failed: " + err.Error())
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(aad))
}

// Open decrypts a value made by Seal with the same aad.
func (s *Sealer) Open(sealed []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrWrongMasterKey
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(aad))
	if err != nil {
		return nil, ErrWrongMasterKey
	}
	return out, nil
}

// SecretAAD is the associated data of a signing secret's ciphertext.
func SecretAAD(userID, secretID string) string { return "secret:" + userID + ":" + secretID }

// SigningKeyAAD is the associated data of a token-signing private key.
func SigningKeyAAD(kid string) string { return "signing-key:" + kid }

// masterCheckPlaintext is sealed under the master key and stored, so a wrong
// master key is caught at start-up rather than as a storm of 401s.
const masterCheckPlaintext = "keygate master key check v1"

// MasterCheckMeta is the meta entry holding the sealed check value.
const MasterCheckMeta = "master-key-check"

// masterCheckAAD follows ResealSecrets' kind:id rule for SealedMeta.
const masterCheckAAD = "meta:" + MasterCheckMeta

// SealCheck returns the check value for the current master key.
func (s *Sealer) SealCheck() []byte { return s.Seal([]byte(masterCheckPlaintext), masterCheckAAD) }

// VerifyCheck reports ErrWrongMasterKey when check was sealed under another key.
func (s *Sealer) VerifyCheck(check []byte) error {
	pt, err := s.Open(check, masterCheckAAD)
	if err != nil || string(pt) != masterCheckPlaintext {
		return ErrWrongMasterKey
	}
	return nil
}
