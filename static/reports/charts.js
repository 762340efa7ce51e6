/* Tessera reports: draws the charts of a page from the JSON its template embeds.
   Every <canvas data-charts="ID" data-index="N"> gets chart N of the JSON in <script id="ID">:
   {type, labels, datasets: [{label, data}], stacked, percent}. Chart.js is vendored
   (static/vendor/chartjs), never loaded from a CDN. */
(function () {
  "use strict";
  var palette = ["#417690", "#e0a526", "#b44b4b", "#5b9a68", "#7d5ba6", "#4bb4b0", "#a6a05b"];

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.charts);
    if (!source || typeof Chart === "undefined") {
      return;
    }
    var spec = JSON.parse(source.textContent)[Number(canvas.dataset.index)];
    if (!spec) {
      return;
    }
    var datasets = spec.datasets.map(function (dataset, i) {
      var colour = palette[i % palette.length];
      return {
        label: dataset.label,
        data: dataset.data,
        backgroundColor: colour,
        borderColor: colour,
        fill: false,
        tension: 0
      };
    });
    var counts = spec.datasets.every(function (dataset) {
      return dataset.data.every(Number.isInteger);
    });
    var tick = spec.percent
      ? function (value) { return Math.round(value * 1000) / 10 + "%"; }
      : undefined;
    new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { position: "bottom" },
          title: { display: Boolean(spec.title), text: spec.title || "" }
        },
        scales: {
          x: { stacked: spec.stacked },
          y: { stacked: spec.stacked, beginAtZero: true, ticks: tick ? { callback: tick } : counts ? { precision: 0 } : {} }
        }
      }
    });
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-charts]").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
