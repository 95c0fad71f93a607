// Lookalike search site. Loaded from /static because the Content-Security-Policy forbids
// inline scripts. Everything here is a convenience: the forms work without JavaScript.
"use strict";

function submitWithFile(form, input, file) {
  // Put a dropped or pasted file into the form's file input, then send the form as usual.
  const transfer = new DataTransfer();
  transfer.items.add(file);
  input.files = transfer.files;
  form.requestSubmit();
}

function firstImage(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && file.type.startsWith("image/")) {
      return file;
    }
  }
  return null;
}

function setUpSearchForm() {
  const form = document.getElementById("search-form");
  if (!form) {
    return;
  }
  const input = document.getElementById("image-input");
  const zone = document.getElementById("drop-zone");
  const chosen = document.getElementById("chosen-file");
  const url = document.getElementById("url-input");

  input.addEventListener("change", () => {
    chosen.textContent = input.files.length ? input.files[0].name : "";
  });
  form.addEventListener("submit", (event) => {
    if (!input.files.length && !url.value.trim()) {
      event.preventDefault();
      chosen.textContent = "Choose, drop or paste an image, or give its URL.";
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = firstImage(event.dataTransfer.files);
    if (file) {
      submitWithFile(form, input, file);
    }
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.items);
    if (file) {
      event.preventDefault();
      submitWithFile(form, input, file);
    }
  });
}

function setUpResultControls() {
  // Sorting and filtering apply as soon as a choice changes; the Apply button is the fallback.
  for (const control of document.querySelectorAll(".auto-submit")) {
    control.addEventListener("change", () => {
      if (control.reportValidity()) {
        control.form.requestSubmit();
      }
    });
  }
  for (const button of document.querySelectorAll("#result-controls .apply")) {
    button.classList.add("hidden-with-js");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpSearchForm();
  setUpResultControls();
});
