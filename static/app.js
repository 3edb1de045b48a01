// Small behaviours htmx does not cover. No inline script anywhere: the CSP forbids it.
document.addEventListener("htmx:sendError", function () {
  var flash = document.getElementById("flash");
  if (flash) {
    flash.textContent = "";
    var div = document.createElement("div");
    div.className = "flash flash-error";
    div.textContent = "The server could not be reached. Check the connection and try again.";
    flash.appendChild(div);
  }
});
document.addEventListener("htmx:beforeRequest", function () {
  var flash = document.getElementById("flash");
  if (flash) { flash.textContent = ""; }
});
