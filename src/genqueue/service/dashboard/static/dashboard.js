// Optional niceties; every page works without this file.
// A header checkbox over a table of checkboxes selects or clears them all.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table")) {
    const boxes = table.querySelectorAll("input[type=checkbox][name=ids]");
    const head = table.querySelector("tr th");
    if (!boxes.length || !head) continue;
    const all = document.createElement("input");
    all.type = "checkbox";
    all.setAttribute("aria-label", "select all");
    all.addEventListener("change", () => boxes.forEach((b) => { b.checked = all.checked; }));
    head.appendChild(all);
  }
});
