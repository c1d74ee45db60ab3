(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var config = { displaylogo: false, responsive: true,
                 modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  var font = { family: "system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif", size: 13 };

  function mapTraces(map, mode) {
    // Plotly renders some HTML in labels: every text from data was escaped by the report,
    // and "%" is escaped here so that a column name cannot act as a template directive.
    var fields = map.fields.map(function (f) { return f.replace(/%/g, "&#37;"); });
    return map.traces.map(function (t) {
      var n = t.n, custom = new Array(n);
      for (var i = 0; i < n; i++) {
        var row = new Array(fields.length);
        for (var k = 0; k < fields.length; k++) {
          row[k] = t.cols[k] === null ? t.dicts[k][i] : t.dicts[k][t.cols[k][i]];
        }
        custom[i] = row;
      }
      var hover = "<b>" + t.name.replace(/%/g, "&#37;") + "</b><br>" + fields.map(function (f, k) {
        return f + ": %{customdata[" + k + "]}";
      }).join("<br>") + "<extra></extra>";
      var trace = {
        name: t.name, customdata: custom, hovertemplate: hover, mode: "markers",
        marker: { color: mode === "verdict" ? t.verdict_color : t.color, symbol: t.symbol,
                  size: t.size, opacity: t.highlight ? 0.95 : 0.7,
                  line: t.highlight ? { width: 1, color: "#3a0000" } : { width: 0 } }
      };
      if (map.dims === 3) {
        trace.type = "scatter3d"; trace.x = t.x; trace.y = t.y; trace.z = t.z;
        trace.marker.size = Math.max(2, t.size - 2);
      } else if (map.dims === 1) {
        trace.type = "scatter"; trace.x = t.x;
        trace.y = t.x.map(function (_, i) { return ((i * 2654435761) % 1000) / 1000 - 0.5; });
      } else {
        trace.type = "scatter"; trace.x = t.x; trace.y = t.y;
      }
      return trace;
    });
  }

  function drawMap() {
    var el = document.getElementById("map");
    if (!el || !data.map) { return; }
    var map = data.map;
    // t: 40 keeps the plot toolbar (top right) above the legend, which starts at the plot's top
    var layout = { font: font, margin: { l: 50, r: 10, t: 40, b: 45 }, hovermode: "closest",
                   legend: { itemsizing: "constant" }, uirevision: "map" };
    if (map.dims === 3) {
      layout.scene = { xaxis: { title: { text: map.axes[0] } }, yaxis: { title: { text: map.axes[1] } },
                       zaxis: { title: { text: map.axes[2] } } };
    } else {
      layout.xaxis = { title: { text: map.axes[0] }, zeroline: false };
      layout.yaxis = { title: { text: map.dims === 1 ? "(spread for legibility)" : map.axes[1] },
                       zeroline: false, showticklabels: map.dims !== 1 };
    }
    Plotly.newPlot(el, mapTraces(map, "cluster"), layout, config);
    document.querySelectorAll("button[data-colour]").forEach(function (button) {
      button.addEventListener("click", function () {
        var mode = button.getAttribute("data-colour");
        Plotly.restyle(el, { "marker.color": map.traces.map(function (t) {
          return mode === "verdict" ? t.verdict_color : t.color; }) });
        document.querySelectorAll("button[data-colour]").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b === button)); });
      });
    });
  }

  function drawFigure(id, figure) {
    var el = document.getElementById(id);
    if (!el || !figure) { return; }
    var layout = Object.assign({ font: font, margin: { l: 55, r: 55, t: 40, b: 60 } }, figure.layout);
    Plotly.newPlot(el, figure.data, layout, config);
  }

  drawMap();
  drawFigure("curves", data.curves);
  drawFigure("trend", data.trend);
  document.body.setAttribute("data-ready", "true");
})();
