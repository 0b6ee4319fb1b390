// The before/after slider of a job's page: the person photo covers the result up to the
// slider's position. A file of ours (the pages' Content-Security-Policy allows no inline script).
(function () {
  var slider = document.getElementById("slider");
  var before = document.getElementById("before");
  if (!slider || !before) { return; }
  slider.addEventListener("input", function () { before.style.width = slider.value + "%"; });
})();
