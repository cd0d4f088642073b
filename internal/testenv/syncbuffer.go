package testenv

import (
	"bytes"
	"sync"
)

// SyncBuffer collects output written by other goroutines (a child
// process's stdout and stderr, a logger) while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// WriteLine appends s and a newline.
func (s *SyncBuffer) WriteLine(line string) { _, _ = s.Write([]byte(line + "\n")) }

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
