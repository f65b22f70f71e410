// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ui is the live terminal view: finished rows scroll, a progress line is rewritten
// in place when the output is a terminal.
type ui struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	hasLine bool
}

func newUI(w io.Writer) *ui {
	u := &ui{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		u.tty = err == nil
	}
	return u
}

func (u *ui) clearLine() {
	if u.hasLine {
		fmt.Fprint(u.w, "\r\033[K")
		u.hasLine = false
	}
}

// progress replaces the progress line (on a terminal only: logs stay readable).
func (u *ui) progress(format string, args ...any) {
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLine()
	fmt.Fprintf(u.w, "\r  … "+format, args...)
	u.hasLine = true
}

func (u *ui) printf(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.clearLine()
	fmt.Fprintf(u.w, format, args...)
}

func (u *ui) header(rep *Report) {
	m := rep.Machine
	u.printf("xmirror bench — %s, %d cores, kernel %s, load %s; frames %d B on the wire, %d flows, %d × %.0fs trials\n",
		m.CPU, m.Cores, m.Kernel, m.LoadStart, rep.Options.FrameBytes, rep.Options.Flows, rep.Options.Reps, rep.Options.TrialSecs)
}

// row prints one finished system of a scenario.
func (u *ui) row(sc string, s *SystemResult) {
	if s.Skipped != "" {
		u.printf("  %-10s %-28s skipped: %s\n", sc, s.Name, s.Skipped)
		return
	}
	u.printf("  %-10s %-28s %s\n", sc, s.Name, metricsLine(s.Metrics))
}

func (u *ui) scenarioDone(sc *ScenarioResult) {
	if sc.Skipped != "" {
		u.printf("%s: skipped: %s\n", sc.Name, sc.Skipped)
		return
	}
	u.printf("\n%s — %s\n%s", sc.Name, sc.Title, textTable(sc))
	for _, n := range sc.Notes {
		u.printf("  note: %s\n", n)
	}
	for _, g := range sc.Goals {
		mark := "MET   "
		if !g.Met {
			mark = "NOT MET"
		}
		u.printf("  goal %s %s (%s)\n", mark, g.Text, g.Detail)
	}
	u.printf("\n")
}

func metricsLine(m map[string]float64) string {
	var parts []string
	for _, mu := range metricUnits {
		if v, ok := m[mu.name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", mu.title, formatValue(v, mu.unit)))
		}
	}
	return strings.Join(parts, ", ")
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "pps":
		return formatPPS(v)
	case "%":
		return fmt.Sprintf("%.2f%%", v)
	case "cores":
		return fmt.Sprintf("%.2f cores", v)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

func formatPPS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f Mpps", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f kpps", v/1e3)
	default:
		return fmt.Sprintf("%.0f pps", v)
	}
}

// tableColumns are the metrics any system of the scenario has, in display order.
func tableColumns(sc *ScenarioResult) []int {
	has := map[string]bool{}
	for _, s := range sc.Systems {
		for k := range s.Metrics {
			has[k] = true
		}
	}
	var cols []int
	for i, mu := range metricUnits {
		if has[mu.name] {
			cols = append(cols, i)
		}
	}
	sort.SliceStable(cols, func(a, b int) bool {
		return metricUnits[cols[a]].name == sc.Primary && metricUnits[cols[b]].name != sc.Primary
	})
	return cols
}

// textTable renders a scenario as an aligned plain-text table.
func textTable(sc *ScenarioResult) string {
	cols := tableColumns(sc)
	head := []string{"system", "vs " + sc.Ceiling}
	for _, c := range cols {
		head = append(head, metricUnits[c].title)
	}
	rows := [][]string{head}
	for _, s := range sc.Systems {
		row := []string{s.Name}
		if s.Skipped != "" {
			row = append(row, "skipped: "+s.Skipped)
			rows = append(rows, row)
			continue
		}
		row = append(row, ratioCell(&s))
		for _, c := range cols {
			if v, ok := s.Metrics[metricUnits[c].name]; ok {
				row = append(row, formatValue(v, metricUnits[c].unit))
			} else {
				row = append(row, "-")
			}
		}
		rows = append(rows, row)
	}
	width := make([]int, len(head))
	for _, r := range rows {
		if len(r) == 2 && strings.HasPrefix(r[1], "skipped") {
			width[0] = max(width[0], len([]rune(r[0])))
			continue
		}
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  ")
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c + strings.Repeat(" ", width[i]-len([]rune(c))+2))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ratioCell is a system's ratio with the range of its rounds' ratios.
func ratioCell(s *SystemResult) string {
	t := ratioText(s.Ratio)
	if rr := roundRange(s.RoundRatios); rr != "" && s.Kind != KindCeiling {
		t += " (" + rr + ")"
	}
	return t
}

func ratioText(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f×", *r)
}
