// SPDX-License-Identifier: Apache-2.0

package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xmirror/xmirror/config"
)

// TestDocYAMLBlocks: every YAML block of the README and docs/ that is a
// configuration (it has a top-level section at column 0) loads, as a user
// who copies it would expect. A block that is only part of one says so on
// its first line ("# part of ...") and is skipped; one that shows a mistake
// on purpose says "# refused".
func TestDocYAMLBlocks(t *testing.T) {
	docs, _ := filepath.Glob("../docs/*.md")
	docs = append(docs, "../README.md")
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	section := regexp.MustCompile(`(?m)^(filters|sessions|source|load_balancer|collector|metrics):`)
	n := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllSubmatchIndex(b, -1) {
			text := string(b[m[2]:m[3]])
			line := 1 + strings.Count(string(b[:m[2]]), "\n")
			first, _, _ := strings.Cut(text, "\n")
			if !section.MatchString(text) || strings.HasPrefix(first, "# part of") || strings.HasPrefix(first, "# refused") {
				continue
			}
			n++
			if _, err := config.Parse([]byte(text)); err != nil {
				t.Errorf("%s:%d: the YAML block does not load:\n%v", doc, line, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no YAML blocks found")
	}
}
