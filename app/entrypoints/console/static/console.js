// KeyLedger console: keyboard conveniences only; every page works without it.
"use strict";
document.addEventListener("keydown", function (event) {
  // "/" focuses the page's search field (as on many consoles), unless typing already.
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
  const field = document.querySelector("[data-shortcut='/']") || document.querySelector("form[role='search'] input");
  if (field) { event.preventDefault(); field.focus(); }
});
