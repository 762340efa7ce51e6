// Live count on the segment page: posts the program and the conditions being edited to the
// admin's count view (nothing is saved) and shows how many members they select today, or
// what is wrong with them, by condition key.
(function () {
  "use strict";

  function setUp() {
    var box = document.getElementById("segment-live-count");
    var conditions = document.getElementById("id_conditions");
    if (!box || !conditions) {
      return;
    }
    // Shown right under the conditions being edited.
    var row = conditions.closest(".form-row");
    if (row) {
      row.appendChild(box);
    }
    var programSelect = document.getElementById("id_program");
    var countEl = box.querySelector('[data-role="count"]');
    var errorsEl = box.querySelector('[data-role="errors"]');
    var csrf = document.querySelector('input[name="csrfmiddlewaretoken"]');
    var timer = null;
    var latest = 0;

    function program() {
      return programSelect ? programSelect.value : box.dataset.program;
    }

    function show(count, errors) {
      countEl.textContent = count;
      if (errors) {
        errorsEl.textContent = Object.keys(errors)
          .map(function (key) { return (key ? key + ": " : "") + errors[key]; })
          .join("; ");
        errorsEl.style.display = "";
      } else {
        errorsEl.textContent = "";
        errorsEl.style.display = "none";
      }
    }

    function refresh() {
      var request = ++latest;
      var body = new FormData();
      body.append("program", program() || "");
      body.append("conditions", conditions.value.trim() || "{}");
      fetch(box.dataset.url, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf ? csrf.value : "" },
      })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (request !== latest) {
            return; // an answer to an older edit
          }
          if (data.errors) {
            show("–", data.errors);
          } else {
            show(String(data.count), null);
          }
        })
        .catch(function () {
          if (request === latest) {
            show("–", { "": "the count could not be fetched" });
          }
        });
    }

    function soon() {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 400);
    }

    conditions.addEventListener("input", soon);
    if (programSelect) {
      programSelect.addEventListener("change", soon);
    }
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
