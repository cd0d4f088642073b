// Command schemagen writes kubeconform-style standalone JSON schemas, offline, from the
// Kubernetes OpenAPI v2 spec (api/openapi-spec/swagger.json of the pinned k8s.io/kubernetes
// module) and from CustomResourceDefinition YAML files (Gateway API HTTPRoute,
// prometheus-operator ServiceMonitor).
//
// Layout written under -out (what kubeconform's default path template expects):
//
//	v<version>-standalone/<kind>-<group>-<version>.json          (unknown fields allowed)
//	v<version>-standalone-strict/<kind>-<group>-<version>.json   (additionalProperties: false)
//
// It lives in its own module so the service's go.mod does not grow a YAML dependency.
// Run by scripts/tools.sh; see docs/DEPLOY.md.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	swagger := flag.String("swagger", "", "path to Kubernetes swagger.json")
	version := flag.String("version", "", "Kubernetes version, e.g. v1.36.1")
	out := flag.String("out", "", "output folder")
	flag.Parse()
	if *swagger == "" || *version == "" || *out == "" {
		log.Fatal("usage: schemagen -swagger swagger.json -version v1.x.y -out DIR [crd.yaml ...]")
	}
	v := "v" + strings.TrimPrefix(*version, "v")
	n, err := fromSwagger(*swagger, *out, v)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range flag.Args() {
		m, err := fromCRDFile(f, *out, v)
		if err != nil {
			log.Fatalf("%s: %v", f, err)
		}
		n += m
	}
	if n == 0 {
		log.Fatal("no schema written")
	}
	fmt.Printf("schemagen: %d kinds written (x2: standalone and strict) under %s\n", n, *out)
}

type obj = map[string]any

// fileName follows kubeconform's schema path template: kind, the group's first DNS
// label, and the version, lower-cased.
func fileName(kind, group, version string) string {
	s := strings.ToLower(kind)
	if group != "" {
		s += "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return s + "-" + strings.ToLower(version) + ".json"
}

func write(out, v, name string, schema any, strict bool) error {
	dir := filepath.Join(out, v+"-standalone")
	if strict {
		dir += "-strict"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(schema); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
}

func fromSwagger(path, out, v string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var spec struct {
		Definitions map[string]obj `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return 0, err
	}
	n := 0
	for name, def := range spec.Definitions {
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) == 0 {
			continue
		}
		for _, strict := range []bool{false, true} {
			s := resolve(def, spec.Definitions, map[string]bool{name: true}, strict)
			for _, g := range gvks {
				gvk := g.(obj)
				kind, _ := gvk["kind"].(string)
				group, _ := gvk["group"].(string)
				ver, _ := gvk["version"].(string)
				if err := write(out, v, fileName(kind, group, ver), s, strict); err != nil {
					return n, err
				}
				if !strict {
					n++
				}
			}
		}
	}
	return n, nil
}

// resolve deep-copies a schema, inlining "#/definitions/X" references (a reference
// already on the current path becomes {} so recursive types terminate), turning
// int-or-string into oneOf, allowing null for typed fields, and in strict mode closing
// every object that lists its properties.
func resolve(node any, defs map[string]obj, path map[string]bool, strict bool) any {
	switch n := node.(type) {
	case obj:
		if ref, ok := n["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			target, found := defs[name]
			if !found || path[name] {
				return obj{}
			}
			path[name] = true
			r := resolve(target, defs, path, strict)
			delete(path, name)
			if m, ok := r.(obj); ok && n["description"] != nil {
				m["description"] = n["description"]
			}
			return r
		}
		m := obj{}
		for k, val := range n {
			switch k {
			case "properties", "patternProperties", "definitions":
				props := obj{}
				for pk, pv := range val.(obj) {
					props[pk] = resolve(pv, defs, path, strict)
				}
				m[k] = props
			default:
				m[k] = resolve(val, defs, path, strict)
			}
		}
		return fixTypes(m, strict)
	case []any:
		l := make([]any, len(n))
		for i, e := range n {
			l[i] = resolve(e, defs, path, strict)
		}
		return l
	default:
		return n
	}
}

func fixTypes(m obj, strict bool) obj {
	if m["format"] == "int-or-string" || m["x-kubernetes-int-or-string"] == true {
		delete(m, "type")
		delete(m, "format")
		m["oneOf"] = []any{obj{"type": "string"}, obj{"type": "integer"}}
	}
	if t, ok := m["type"].(string); ok {
		if t == "string" && m["format"] == "quantity" {
			m["type"] = []any{"string", "number", "null"}
		} else {
			m["type"] = []any{t, "null"}
		}
		if t == "object" && strict {
			if _, has := m["properties"]; has && m["additionalProperties"] == nil &&
				m["x-kubernetes-preserve-unknown-fields"] != true {
				m["additionalProperties"] = false
			}
		}
	}
	return m
}

func fromCRDFile(path, out, v string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Served bool   `json:"served"`
					Schema struct {
						OpenAPIV3Schema obj `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &crd); err != nil {
			return n, err
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, ver := range crd.Spec.Versions {
			if !ver.Served || ver.Schema.OpenAPIV3Schema == nil {
				continue
			}
			for _, strict := range []bool{false, true} {
				s := resolve(ver.Schema.OpenAPIV3Schema, nil, map[string]bool{}, strict).(obj)
				props, _ := s["properties"].(obj)
				if props == nil {
					props = obj{}
					s["properties"] = props
				}
				for _, k := range []string{"apiVersion", "kind"} {
					if props[k] == nil {
						props[k] = obj{"type": "string"}
					}
				}
				if props["metadata"] == nil || len(props["metadata"].(obj)) <= 1 {
					props["metadata"] = obj{"type": "object"}
				}
				name := fileName(crd.Spec.Names.Kind, crd.Spec.Group, ver.Name)
				if err := write(out, v, name, s, strict); err != nil {
					return n, err
				}
			}
			n++
		}
	}
	return n, nil
}
