// cdrgate console, no dependencies. Without this file every link still works (Play opens
// the recording in the browser's own player); with it, Play opens a player inside the row.
"use strict";
document.addEventListener("click", function (event) {
  var link = event.target.closest("a.play");
  if (!link) return;
  event.preventDefault();
  var cell = link.parentElement;
  var audio = cell.querySelector("audio");
  if (!audio) {
    audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = link.dataset.src;
    audio.setAttribute("aria-label", link.getAttribute("aria-label"));
    audio.addEventListener("error", function () {
      // Either the CDR names a file the server does not have (not copied yet, or pruned), or
      // the session ended while the page stood open, and the player was sent the sign-in
      // page. The player cannot tell which: asking this page again can (it is sent to sign
      // in too), so an agent back from a break is not told that the recording is missing.
      fetch(location.href, { redirect: "manual", cache: "no-store" })
        .then(function (answer) { return answer.type === "opaqueredirect"; })
        .catch(function () { return false; })
        .then(function (signedOut) {
          var note = document.createElement("span");
          note.className = "none";
          note.setAttribute("role", "status");
          if (signedOut) {
            var again = document.createElement("a");
            again.href = location.href;
            again.textContent = "Sign in again";
            note.append("Your session has ended. ", again);
          } else {
            note.textContent = "Recording not available on the server";
          }
          audio.replaceWith(note);
          link.focus();  // not lost to the page's start with the player it was on
        });
    });
    cell.appendChild(audio);
  }
  audio.play().catch(function () { /* the controls stay for the user to press play */ });
  audio.focus();
});

// One recording at a time: Play on another row pauses the one playing (an agent comparing
// calls heard both at once). "play" does not bubble, hence the capture.
document.addEventListener("play", function (event) {
  document.querySelectorAll("audio").forEach(function (other) {
    if (other !== event.target) other.pause();
  });
}, true);

// Empty filter fields mean "any": leave them out of the URL, so a shared link says only
// what it filters on (the server ignores them either way).
document.addEventListener("submit", function (event) {
  if (!event.target.matches("form.filters")) return;
  event.target.querySelectorAll("input, select").forEach(function (field) {
    if (field.value === "") field.disabled = true;
  });
});
