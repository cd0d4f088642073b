package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file, directory or symlink of a layer.
type entry struct {
	path     string // absolute path in the image, e.g. /etc/passwd
	mode     int64  // permission bits (and setuid/sticky)
	uid, gid int
	kind     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	data     []byte // regular files
	link     string // symlinks
}

// layer builds a gzip-compressed tar layer from entries: sorted by path, every
// time set to epoch, numeric owners only, parents before children.
func layer(entries []entry, epoch time.Time) (v1.Layer, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// No name, no modification time in the gzip header (Go writes neither unless set).
	tw := tar.NewWriter(zw)
	seen := map[string]bool{}
	for _, e := range entries {
		name := strings.TrimPrefix(e.path, "/")
		if name == "" || seen[name] {
			return nil, fmt.Errorf("layer: empty or duplicate path %q", e.path)
		}
		seen[name] = true
		hdr := &tar.Header{
			Typeflag: e.kind, Name: name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: epoch, Format: tar.FormatPAX,
		}
		switch e.kind {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = int64(len(e.data))
		case tar.TypeSymlink:
			hdr.Linkname = e.link
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if e.kind == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// treeEntries copies a host directory tree (regular files, directories,
// symlinks) to dest in the image, owned by root, world-readable.
func treeEntries(src, dest string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.ToSlash(filepath.Join(dest, rel))
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, entry{path: target, mode: 0o777, kind: tar.TypeSymlink, link: l})
		case d.IsDir():
			out = append(out, entry{path: target, mode: 0o755, kind: tar.TypeDir})
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, entry{path: target, mode: 0o644, kind: tar.TypeReg, data: b})
		}
		return nil
	})
	return out, err
}

// dirs returns directory entries for every parent of the given paths that is
// not listed yet, so that a layer never implies a directory with unknown mode.
func withParents(entries []entry) []entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.path] = true
	}
	for _, e := range entries {
		for p := filepath.Dir(e.path); p != "/" && p != "."; p = filepath.Dir(p) {
			if !have[p] {
				have[p] = true
				entries = append(entries, entry{path: p, mode: 0o755, kind: tar.TypeDir})
			}
		}
	}
	return entries
}
