/* The partner portal's dashboard charts, drawn by the vendored Chart.js from the data the page
   embeds with json_script (#portal-chart-data). No data leaves the page. */
(function () {
  "use strict";
  var source = document.getElementById("portal-chart-data");
  if (!source || typeof Chart === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var palette = ["#1e6fd9", "#e07a1f", "#2e9e6a", "#8a4fd1", "#c23b5a", "#6b7785"];
  var number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  var common = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: "index", intersect: false },
    plugins: {
      legend: { position: "bottom", labels: { boxWidth: 12 } },
      tooltip: {
        callbacks: {
          label: function (item) { return item.dataset.label + ": " + number.format(item.parsed.y); }
        }
      }
    }
  };

  var points = document.getElementById("points-chart");
  if (points) {
    new Chart(points, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.points.map(function (set, index) {
          return { label: set.label, data: set.data, backgroundColor: palette[index % palette.length] };
        })
      },
      options: Object.assign({}, common, {
        scales: { y: { beginAtZero: true, ticks: { callback: function (v) { return number.format(v); } } } }
      })
    });
  }

  var sales = document.getElementById("sales-chart");
  if (sales) {
    var datasets = [{
      type: "bar", label: "Transactions", data: data.transactions,
      backgroundColor: "#b9cfee", yAxisID: "count", order: 2
    }];
    data.amounts.forEach(function (set, index) {
      datasets.push({
        type: "line", label: set.label, data: set.data, yAxisID: "amount", order: 1,
        borderColor: palette[(index + 1) % palette.length],
        backgroundColor: palette[(index + 1) % palette.length], cubicInterpolationMode: "monotone",
        pointRadius: 3
      });
    });
    new Chart(sales, {
      data: { labels: data.labels, datasets: datasets },
      options: Object.assign({}, common, {
        scales: {
          count: { type: "linear", position: "left", beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "transactions" } },
          amount: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                    title: { display: true, text: "amount" } }
        }
      })
    });
  }
  document.documentElement.dataset.chartsReady = "true";
})();
