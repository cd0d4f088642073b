package session

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"
)

// The cookie store compresses the session before sealing it: ZITADEL's ID
// token, access token and userinfo together come close to the 4 KB cookie
// limit, and JSON with base64url segments deflates by a quarter or more.
// Compressing before encrypting leaks only the length, and nobody but the
// user's own identity provider puts content into a session, so there is no
// attacker-chosen text to probe it with (no CRIME/BREACH setting).
// BestSpeed: a session is sealed at every sign-in and idle stamp, and the
// better levels buy a few dozen bytes for twice the CPU
// (BenchmarkCookieStore_Save). The pools exist because a flate writer or
// reader is hundreds of kilobytes of state.

const (
	formatRaw     = 0
	formatDeflate = 1
	maxInflated   = 64 << 10
)

var (
	writers = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, flate.BestSpeed)
		return w
	}}
	readers = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

var errCorrupt = errors.New("session payload corrupt")

// deflate returns the payload with a format byte in front, compressed when
// that makes it smaller.
func deflate(p []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(p)/2 + 16)
	buf.WriteByte(formatDeflate)
	w := writers.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(p)
	_ = w.Close()
	writers.Put(w)
	if buf.Len() >= len(p)+1 {
		out := make([]byte, 0, len(p)+1)
		return append(append(out, formatRaw), p...)
	}
	return buf.Bytes()
}

func inflate(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return p, nil
	}
	switch p[0] {
	case formatRaw:
		return p[1:], nil
	case formatDeflate:
	default:
		return nil, errCorrupt
	}
	r := readers.Get().(io.ReadCloser)
	defer readers.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(p[1:]), nil); err != nil {
		return nil, errCorrupt
	}
	out, err := io.ReadAll(io.LimitReader(r, maxInflated+1))
	if err != nil || len(out) > maxInflated {
		return nil, errCorrupt
	}
	return out, nil
}
