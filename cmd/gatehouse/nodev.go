//go:build production

package main

import (
	"errors"
	"io"
	"net"

	"github.com/gatehouse/gatehouse/internal/config"
)

// devProvider does not exist in the production build: see dev.go.
type devProvider struct{}

func (*devProvider) serve()                               {}
func (*devProvider) close()                               {}
func (*devProvider) printBanner(io.Writer, config.Config) {}
func (*devProvider) appListener() net.Listener            { return nil }

// errNoDevProvider is what -dev answers in a production build.
var errNoDevProvider = errors.New("-dev: this is a production build (-tags production) without the development identity provider; use a development build: go run ./cmd/gatehouse -dev")

func startDevProvider(string, string, bool, func(string) (string, bool), map[string]string, io.Writer) (*devProvider, config.Overrides, error) {
	return nil, nil, errNoDevProvider
}
