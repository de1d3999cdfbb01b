// stochgrad report: expand/collapse all sections; open everything (and load lazy images) before printing.
(function () {
  function setAll(open) {
    document.querySelectorAll("details").forEach(function (d) { d.open = open; });
    if (open) { document.querySelectorAll("img[loading=lazy]").forEach(function (i) { i.loading = "eager"; }); }
  }
  document.querySelectorAll("[data-expand]").forEach(function (b) {
    b.addEventListener("click", function () { setAll(b.getAttribute("data-expand") === "1"); });
  });
  window.addEventListener("beforeprint", function () { setAll(true); });
  if (location.hash) {
    var t = document.getElementById(location.hash.slice(1));
    for (var e = t; e; e = e.parentElement) { if (e.tagName === "DETAILS") { e.open = true; } }
  }
  document.querySelectorAll('a[href^="#"]').forEach(function (a) {
    a.addEventListener("click", function () {
      var t = document.getElementById(a.getAttribute("href").slice(1));
      for (var e = t; e; e = e.parentElement) { if (e.tagName === "DETAILS") { e.open = true; } }
    });
  });
})();
