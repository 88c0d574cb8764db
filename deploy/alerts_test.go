package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAlertRulesUseExportedMetrics parses the alert rules and checks that
// every rafter_* metric they name is declared in the code (a metric renamed
// in the code must not leave an alert that can never fire).
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	exported := exportedMetrics(t, root)
	metric := regexp.MustCompile(`\brafter_[a-z0-9_]+`)
	seen := map[string]bool{}
	rules := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			rules++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("group %s: rule %q needs alert, expr, labels.severity and annotations.summary", g.Name, r.Alert)
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			names := metric.FindAllString(r.Expr, -1)
			if len(names) == 0 && !strings.Contains(r.Expr, "up{") {
				t.Errorf("alert %s uses no rafter metric: %s", r.Alert, r.Expr)
			}
			for _, name := range names {
				if !exported[name] {
					t.Errorf("alert %s uses %s, which no code under cluster/, dataplane/ or agent/ exports", r.Alert, name)
				}
			}
		}
	}
	for _, want := range []string{"RafterNoLeader", "RafterMemberLost", "RafterVIPMoved", "RafterConfigLag", "RafterPoolDown"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
	t.Logf("%d rules, %d metrics exported by the code", rules, len(exported))
}

// exportedMetrics are the metric names declared in non-test Go files: the
// Name of prometheus *Opts and the first argument of prometheus.NewDesc.
func exportedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|\bd\(\s*)"(rafter_[a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, dir := range []string{"cluster", "dataplane", "agent"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
				out[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metric declarations; the pattern no longer matches the code", len(out))
	}
	return out
}
