package bench

import (
	"fmt"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartPanel is one bar chart of the figure.
type chartPanel struct {
	title, ylabel string
	value         func(Figure) float64
}

// WriteChart draws throughput, p99 latency and CPU per request side by side,
// one bar per proxy and body size, into a PNG at path.
func WriteChart(r *Result, path string) error {
	panels := []chartPanel{
		{"Throughput at saturation", "requests/s", func(f Figure) float64 { return f.RPS }},
		{"p99 latency, paced load", "ms", func(f Figure) float64 { return f.P99Ms }},
		{"Proxy CPU per request", "µs", func(f Figure) float64 { return f.CPUPerReqUs }},
	}
	proxies := r.activeProxies()
	var labels []string
	for _, b := range r.Config.BodySizes {
		labels = append(labels, BodyLabel(b))
	}
	row := make([]*plot.Plot, len(panels))
	barW := vg.Points(14)
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.Y.Label.Text = pn.ylabel
		p.Y.Min = 0
		for j, name := range proxies {
			vals := make(plotter.Values, len(r.Config.BodySizes))
			for k, body := range r.Config.BodySizes {
				for _, f := range r.Figures {
					if f.Proxy == name && f.BodyBytes == body {
						vals[k] = pn.value(f)
					}
				}
			}
			bars, err := plotter.NewBarChart(vals, barW)
			if err != nil {
				return fmt.Errorf("chart %s: %w", pn.title, err)
			}
			bars.LineStyle.Width = 0
			bars.Color = plotutil.Color(j)
			bars.Offset = barW * vg.Length(float64(j)-float64(len(proxies)-1)/2)
			p.Add(bars)
			if i == 0 {
				p.Legend.Add(name, bars)
			}
		}
		p.Legend.Top = true
		p.NominalX(labels...)
		row[i] = p
	}
	const w, h = 15 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 4, PadBottom: vg.Millimeter * 4, PadLeft: vg.Millimeter * 4, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{row}, t, dc)
	for i, p := range row {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: %w", err)
	}
	return f.Close()
}
