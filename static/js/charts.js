// Render every plotly figure embedded by templates/billing/_chart.html (JSON from json_script, no eval).
// Runs on page load, on every htmx swap (htmx.onLoad) and after a history restore.
(function () {
  "use strict";
  var config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

  function render(figureEl) {
    var plot = figureEl.querySelector(".chart-plot");
    var source = figureEl.querySelector('script[type="application/json"]');
    if (!plot || !source || !window.Plotly) return;
    var figure = JSON.parse(source.textContent);
    if (window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches) {
      // follow the system's dark theme: transparent backgrounds, light text and grid
      figure.layout.paper_bgcolor = figure.layout.plot_bgcolor = "rgba(0,0,0,0)";
      figure.layout.font = Object.assign({}, figure.layout.font, { color: "#e4e7ee" });
      ["xaxis", "yaxis"].forEach(function (axis) {
        figure.layout[axis] = Object.assign({ gridcolor: "#353c4a", zerolinecolor: "#4a5262" }, figure.layout[axis]);
      });
    }
    plot.innerHTML = "";  // a restored history snapshot holds a dead copy of the old SVG
    window.Plotly.newPlot(plot, figure.data, figure.layout, config);
  }

  function renderAll(root) {
    var scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches(".js-chart")) render(scope);
    scope.querySelectorAll(".js-chart").forEach(render);
    revealAnchor(scope);
  }

  // A link to a chart (e.g. from an alert) names it by #id; a section loaded after the page (the feature
  // page's spend sections) brings that id later than the browser looked for it, so scroll to it then.
  function revealAnchor(scope) {
    var id = window.location.hash.slice(1);
    if (!id || scope === document) return;
    var target = document.getElementById(id);
    if (target && scope.contains(target)) target.scrollIntoView();
  }

  function start() {
    if (window.htmx) {
      window.htmx.onLoad(renderAll);
      document.body.addEventListener("htmx:historyRestore", function () { renderAll(document); });
    } else {
      renderAll(document);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
