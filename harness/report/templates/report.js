// stochgrad report: expand/collapse all sections; tables sortable (click a header), filterable (type) and cut to
// their top rows ("show all"); everything opens before printing.  No network, no libraries.
(function () {
  var LIMIT = 20;
  function setAll(open) {
    document.querySelectorAll("details").forEach(function (d) { d.open = open; });
    if (open) { document.querySelectorAll("img[loading=lazy]").forEach(function (i) { i.loading = "eager"; }); }
  }
  function openTo(t) { for (var e = t; e; e = e.parentElement) { if (e.tagName === "DETAILS") { e.open = true; } } }
  document.querySelectorAll("[data-expand]").forEach(function (b) {
    b.addEventListener("click", function () { setAll(b.getAttribute("data-expand") === "1"); });
  });
  if (location.hash) { openTo(document.getElementById(location.hash.slice(1))); }
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest('a[href^="#"]');
    if (a) { openTo(document.getElementById(a.getAttribute("href").slice(1))); }
  });

  var NUM = /^\s*([-\u2212]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)/i;
  function num(text) {
    var m = NUM.exec(text);
    return m ? parseFloat(m[1].replace("\u2212", "-")) : NaN;
  }
  function setup(table) {
    var body = table.tBodies[0];
    if (!body || !table.tHead) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    var state = { q: "", all: rows.length <= LIMIT };
    var bar = document.createElement("div");
    bar.className = "tabletools";
    var input = document.createElement("input");
    input.type = "search";
    input.placeholder = "filter rows";
    input.setAttribute("aria-label", "filter the rows of the table below");
    var info = document.createElement("span");
    info.className = "muted";
    var more = document.createElement("button");
    more.type = "button";
    bar.appendChild(input);
    bar.appendChild(info);
    bar.appendChild(more);
    var wrap = table.parentElement && table.parentElement.className === "tablewrap" ? table.parentElement : table;
    wrap.parentElement.insertBefore(bar, wrap);
    function apply() {
      var q = state.q, shown = 0, match = 0;
      rows.forEach(function (r) {
        var ok = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
        if (ok) { match += 1; }
        var vis = ok && (state.all || match <= LIMIT);
        r.classList.toggle("hidden-row", !vis);
        if (vis) { shown += 1; }
      });
      info.textContent = shown === rows.length ? rows.length + " rows" : "showing " + shown + " of " + match +
        (q ? " matching (" + rows.length + " rows)" : " rows");
      more.hidden = state.all || match <= LIMIT;
      more.textContent = "show all " + match;
    }
    input.addEventListener("input", function () { state.q = input.value.trim().toLowerCase(); apply(); });
    more.addEventListener("click", function () { state.all = true; apply(); });
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function (th, col) {
      if (th.colSpan > 1) { return; }
      th.setAttribute("aria-sort", "none");
      th.tabIndex = 0;
      th.title = "sort by this column";
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(head.cells, function (h) { if (h.hasAttribute("aria-sort")) { h.setAttribute("aria-sort", "none"); } });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var keyed = rows.map(function (r, i) { var c = r.cells[col]; return [c ? c.textContent : "", i, r]; });
        var numeric = keyed.filter(function (k) { return !isNaN(num(k[0])); }).length * 2 >= keyed.length;
        keyed.sort(function (a, b) {
          var d;
          if (numeric) {
            var x = num(a[0]), y = num(b[0]);
            d = isNaN(x) ? (isNaN(y) ? 0 : 1) : (isNaN(y) ? -1 : (asc ? x - y : y - x));
          } else { d = asc ? a[0].localeCompare(b[0]) : b[0].localeCompare(a[0]); }
          return d || a[1] - b[1];
        });
        rows = keyed.map(function (k) { return k[2]; });
        rows.forEach(function (r) { body.appendChild(r); });
        apply();
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); } });
    });
    apply();
  }
  // after the first frame is painted: the summary shows at once, the tools follow a few milliseconds later
  requestAnimationFrame(function () {
    setTimeout(function () {
      document.querySelectorAll("table:not(.heat)").forEach(setup);
      document.body.setAttribute("data-tables-ready", "1");
    }, 0);
  });
  window.addEventListener("beforeprint", function () {
    setAll(true);
    document.querySelectorAll("tr.hidden-row").forEach(function (r) { r.classList.remove("hidden-row"); });
  });
})();
