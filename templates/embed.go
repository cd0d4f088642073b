// Package templates holds Gatehouse's pages, as templ components
// (*.templ, compiled to *_templ.go by `go tool templ generate`), and the
// static files, embedded in the binary so it runs from any working
// directory and ships as one file.
//
// The pages take the small view models in views.go, not the auth or web
// packages' types: this package imports nothing of Gatehouse's own, and
// internal/web builds the view models.
package templates

import "embed"

// FS holds static/ (CSS, JavaScript, images).
//
//go:embed static
var FS embed.FS
