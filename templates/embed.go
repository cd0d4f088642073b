// Package templates holds the HTML templates and static files, embedded in
// the binary so it runs from any working directory and ships as one file.
package templates

import "embed"

// FS holds *.html (the pages) and static/ (CSS, JavaScript, images).
//
//go:embed *.html static
var FS embed.FS
