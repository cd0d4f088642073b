package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// profileDuring starts a CPU profile of seconds of the Gatehouse under
// test (its ADMIN_PPROF profiler) into dir/name and returns a wait for it;
// call the workload in between. The profiler wants the length up front; a
// workload that ends sooner leaves idle time in the window, which a CPU
// profile does not count. With dir empty it does nothing.
func profileDuring(ctx context.Context, dir, admin, name string, seconds int) (wait func() error) {
	if dir == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		done <- saveProfile(ctx, dir, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, seconds), name)
	}()
	return func() error { return <-done }
}

// saveProfile fetches a profile URL into dir/name (nothing without a dir).
func saveProfile(ctx context.Context, dir, url, name string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", name, resp.Status)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
