// Paging and filtering for big runs: only one page of rows and client ladders is shown at a
// time, so a 200-client report stays quick. Without script everything is simply listed.
(function () {
  "use strict";
  function pager(container, items, size) {
    var el = document.querySelector('.pager[data-for="' + container.id + '"]');
    var page = 0, shown = items;
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / size));
      if (page >= pages) page = pages - 1;
      items.forEach(function (item) { item.hidden = true; });
      shown.slice(page * size, (page + 1) * size).forEach(function (item) { item.hidden = false; });
      if (!el) return;
      el.textContent = "";
      if (pages < 2) { el.textContent = shown.length + " shown"; return; }
      var prev = document.createElement("button"), next = document.createElement("button"), label = document.createElement("span");
      prev.textContent = "‹ prev"; next.textContent = "next ›";
      prev.disabled = page === 0; next.disabled = page === pages - 1;
      prev.onclick = function () { page--; draw(); }; next.onclick = function () { page++; draw(); };
      label.textContent = "page " + (page + 1) + " of " + pages + " (" + shown.length + ")";
      el.append(prev, label, next);
    }
    return {
      filter: function (keep) { shown = items.filter(keep); page = 0; draw(); },
      reveal: function (item) { var i = shown.indexOf(item); if (i >= 0) { page = Math.floor(i / size); draw(); } }
    };
  }
  var table = document.getElementById("conv"), clients = document.getElementById("clients");
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var boxes = Array.prototype.slice.call(clients.querySelectorAll("details.client"));
  var rowPager = pager(table, rows, +table.dataset.page), ladderPager = pager(clients, boxes, +clients.dataset.page);
  var search = document.getElementById("filter"), problems = document.getElementById("problems");
  function apply() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean), only = problems.checked;
    function keep(el) {
      var text = el.textContent.toLowerCase();
      return (!only || el.classList.contains("problem")) && words.every(function (w) { return text.indexOf(w) >= 0; });
    }
    rowPager.filter(keep); ladderPager.filter(keep);
  }
  search.addEventListener("input", apply); problems.addEventListener("change", apply); apply();
  document.getElementById("open-all").onclick = function () { boxes.forEach(function (b) { if (!b.hidden) b.open = true; }); };
  document.getElementById("close-all").onclick = function () { boxes.forEach(function (b) { b.open = false; }); };
  table.addEventListener("click", function (e) {
    var link = e.target.closest("a.to-ladder");
    if (!link) return;
    var figure = document.getElementById(link.getAttribute("href").slice(1));
    if (!figure) return;
    var box = figure.closest("details");
    ladderPager.reveal(box); box.open = true;
  });
})();
