package keys

import (
	"encoding/hex"
	"testing"
)

// TestLegacySchemes checks each scheme against known digests: MurmurHash3
// reference values (x86_32 and x64_128, seed 0, as Tyk hex-encodes them;
// cross-checked against github.com/spaolacci/murmur3, which Tyk's fork
// derives from), and the standard digests with KrakenD's salt first.
func TestLegacySchemes(t *testing.T) {
	for _, tc := range []struct {
		scheme, key, want string
	}{
		{HashMurmur32, "", "00000000"},
		{HashMurmur32, "hello", "248bfa47"},
		{HashMurmur32, "The quick brown fox jumps over the lazy dog", "2e4ff723"},
		{HashMurmur64, "hello", "cbd8a7b341bd9b02"},
		{HashMurmur128, "hello", "cbd8a7b341bd9b025b1e906a48ae1d19"},
		{HashMurmur128, "The quick brown fox jumps over the lazy dog", "e34bbc7bbc071b6c7a433ca9c49a9347"},
		{HashMurmur64, "5e9d9544a1dcd60001d0ed20a6ab77653d7da4b39ad1af9c98bba1a8", "6deab270d1f683a9"},
		{HashSHA256, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{HashSHA256 + ":" + hex.EncodeToString([]byte("ab")), "c", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{HashSHA1, "abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{HashFNV128, "", "6c62272e07bb014262b821756295c58d"},
	} {
		ls, err := ParseLegacyScheme(tc.scheme)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(ls.Sum(tc.key)); got != tc.want {
			t.Errorf("%s(%q) = %s, want %s", tc.scheme, tc.key, got, tc.want)
		}
		if ls.String() != tc.scheme {
			t.Errorf("String() = %q, want %q", ls.String(), tc.scheme)
		}
	}
	for _, bad := range []string{"md5", "sha256:zz", "sha256:", ""} {
		if _, err := ParseLegacyScheme(bad); err == nil {
			t.Errorf("ParseLegacyScheme(%q) accepted", bad)
		}
	}
	if !WeakScheme(HashMurmur32) || !WeakScheme(HashFNV128+":00") || WeakScheme(HashSHA1) || WeakScheme(HashSHA256) {
		t.Error("WeakScheme")
	}
}
