package seal_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// FuzzOpen: no value opens unless it is the one value sealed here (up to
// line breaks, which base64 decoding skips), under its own name;
// everything else is ErrInvalid, without a panic.
func FuzzOpen(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s, err := seal.New("fuzz-seal-secret-0123456789abcdefghij", "fuzz-seal-previous-0123456789abcdefgh", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	old, err := seal.New("fuzz-seal-previous-0123456789abcdefgh", "", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	plain := []byte(`{"s":"state","n":"nonce","v":"verifier"}`)
	current := s.Seal("cookie", plain, now)
	previous := old.Seal("cookie", plain, now)
	// The property below only means something if real values do open,
	// and only under their own name.
	for _, v := range []string{current, previous} {
		if got, _, _, err := s.Open("cookie", v, time.Hour, now); err != nil || !bytes.Equal(got, plain) {
			f.Fatalf("a value sealed here does not open: %v", err)
		}
		if _, _, _, err := s.Open("other-cookie", v, time.Hour, now); !errors.Is(err, seal.ErrInvalid) {
			f.Fatalf("a value opened under another name: %v", err)
		}
	}
	for _, v := range []string{current, previous, current[:20], current + "A", "", "AQ", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		f.Add("cookie", v)
	}
	f.Add("other-cookie", current)
	f.Fuzz(func(t *testing.T, name, value string) {
		got, _, _, err := s.Open(name, value, time.Hour, now)
		if err != nil {
			if !errors.Is(err, seal.ErrInvalid) {
				t.Fatalf("Open error %v, want ErrInvalid", err)
			}
			return
		}
		if name != "cookie" || !bytes.Equal(got, plain) {
			t.Fatalf("Open(%q, %q) = %q: a value nobody sealed opened", name, value, got)
		}
	})
}
