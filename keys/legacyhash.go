package keys

import (
	"crypto/sha1" //nolint:gosec // SHA-1 preimages are what KrakenD stored; see HashSHA1.
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/bits"
	"strings"
)

// Legacy hash schemes: how a peer gateway stored a key it no longer shows
// in clear. A key imported only as such a hash keeps it, under its scheme,
// until its first use: then the presented key is hashed the peer's way,
// found, and re-hashed to keygate's own (Store.RehashKey).
//
// A scheme string is a name, optionally followed by ":" and the hex of a
// salt that is hashed before the key (KrakenD's "salt": salt + key).
const (
	// HashSHA256 is SHA-256 of the key: Tyk's sha256 hash_key_function,
	// Unkey's sha256_base64, KrakenD's sha256, the CSV key_sha256 column.
	HashSHA256 = "sha256"
	// HashSHA1 is SHA-1 of the key (KrakenD's sha1). Its collision
	// weakness does not matter for a key: finding a preimage is what
	// forges one, and SHA-1 preimages are still out of reach.
	HashSHA1 = "sha1"
	// HashFNV128 is FNV-1 128 (KrakenD's fnv128; Go's hash/fnv New128).
	// Weak: FNV is no cryptographic hash, a preimage is cheap to compute.
	HashFNV128 = "fnv128"
	// HashMurmur32, HashMurmur64 and HashMurmur128 are MurmurHash3 as Tyk
	// stores keys (x86_32; the first half of x64_128; x64_128; each as the
	// big-endian bytes Tyk hex-encodes). Weak: a preimage is cheap, and a
	// 32-bit digest is guessed online in about 2^32 tries divided by the
	// number of keys still waiting for their first use.
	HashMurmur32  = "murmur32"
	HashMurmur64  = "murmur64"
	HashMurmur128 = "murmur128"
)

// LegacyScheme is a parsed scheme string.
type LegacyScheme struct {
	Name string
	Salt []byte
}

// ParseLegacyScheme parses a scheme string (name[:salthex]).
func ParseLegacyScheme(s string) (LegacyScheme, error) {
	name, saltHex, salted := strings.Cut(s, ":")
	if DigestSize(name) == 0 {
		return LegacyScheme{}, fmt.Errorf("unknown key hash scheme %q", name)
	}
	ls := LegacyScheme{Name: name}
	if salted {
		salt, err := hex.DecodeString(saltHex)
		if err != nil || len(salt) == 0 || len(salt) > 256 {
			return LegacyScheme{}, fmt.Errorf("key hash scheme %q: the salt must be 1 to 256 bytes in hex", name)
		}
		ls.Salt = salt
	}
	return ls, nil
}

// String is the scheme string.
func (l LegacyScheme) String() string {
	if len(l.Salt) == 0 {
		return l.Name
	}
	return l.Name + ":" + hex.EncodeToString(l.Salt)
}

// Weak reports whether the scheme is a non-cryptographic hash (murmur, fnv).
func (l LegacyScheme) Weak() bool { return WeakScheme(l.Name) }

// WeakScheme reports whether a scheme name is a non-cryptographic hash.
func WeakScheme(name string) bool {
	name, _, _ = strings.Cut(name, ":")
	switch name {
	case HashFNV128, HashMurmur32, HashMurmur64, HashMurmur128:
		return true
	}
	return false
}

// DigestSize is the size in bytes of a scheme's digest, 0 for an unknown name.
func DigestSize(name string) int {
	switch name {
	case HashSHA256:
		return sha256.Size
	case HashSHA1:
		return sha1.Size
	case HashFNV128, HashMurmur128:
		return 16
	case HashMurmur64:
		return 8
	case HashMurmur32:
		return 4
	}
	return 0
}

// Sum returns the digest of key under the scheme (salt first).
func (l LegacyScheme) Sum(key string) []byte {
	switch l.Name {
	case HashSHA256:
		h := sha256.New()
		h.Write(l.Salt)
		h.Write([]byte(key))
		return h.Sum(nil)
	case HashSHA1:
		h := sha1.New() //nolint:gosec // see HashSHA1
		h.Write(l.Salt)
		h.Write([]byte(key))
		return h.Sum(nil)
	case HashFNV128:
		h := fnv.New128()
		h.Write(l.Salt)
		h.Write([]byte(key))
		return h.Sum(nil)
	}
	data := append(append([]byte(nil), l.Salt...), key...)
	switch l.Name {
	case HashMurmur32:
		return binary.BigEndian.AppendUint32(nil, murmur3x86_32(data, 0))
	case HashMurmur64:
		h1, _ := murmur3x64_128(data, 0)
		return binary.BigEndian.AppendUint64(nil, h1)
	case HashMurmur128:
		h1, h2 := murmur3x64_128(data, 0)
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, h1), h2)
	}
	return nil
}

// murmur3x86_32 is MurmurHash3_x86_32 (Austin Appleby's reference).
func murmur3x86_32(data []byte, seed uint32) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	h := seed
	n := len(data) / 4
	for i := 0; i < n; i++ {
		k := binary.LittleEndian.Uint32(data[4*i:])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
	}
	tail := data[4*n:]
	var k uint32
	switch len(tail) {
	case 3:
		k ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(tail[0])
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
	}
	h ^= uint32(len(data))
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// murmur3x64_128 is MurmurHash3_x64_128 (Austin Appleby's reference).
func murmur3x64_128(data []byte, seed uint64) (uint64, uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	h1, h2 := seed, seed
	n := len(data) / 16
	for i := 0; i < n; i++ {
		k1 := binary.LittleEndian.Uint64(data[16*i:])
		k2 := binary.LittleEndian.Uint64(data[16*i+8:])
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}
	tail := data[16*n:]
	var k1, k2 uint64
	for i := len(tail) - 1; i >= 8; i-- {
		k2 ^= uint64(tail[i]) << (8 * (i - 8))
	}
	if len(tail) > 8 {
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
	}
	for i := min(len(tail), 8) - 1; i >= 0; i-- {
		k1 ^= uint64(tail[i]) << (8 * i)
	}
	if len(tail) > 0 {
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
	}
	h1 ^= uint64(len(data))
	h2 ^= uint64(len(data))
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
