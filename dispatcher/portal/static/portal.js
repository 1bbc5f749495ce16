// The Webhook section's only script. Every form works without it; it adds
// Reveal without a page load, Copy, and announcements in the live region.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const announce = (text) => {
    const region = document.getElementById("announce");
    if (!region) return;
    region.classList.remove("empty");
    // Clearing first makes screen readers announce a repeated message too.
    region.textContent = "";
    setTimeout(() => { region.textContent = text; }, 50);
  };

  const output = document.getElementById("secret-value");
  const revealForm = document.querySelector("form[data-reveal]");
  const copyButton = document.querySelector("[data-copy]");
  if (!output || !revealForm) return;

  let secret = output.textContent.startsWith("whsec_…") ? "" : output.textContent;
  const fetchSecret = async () => {
    if (secret) return secret;
    const res = await fetch(revealForm.action, {
      method: "POST", headers: { "Accept": "application/json" }, credentials: "same-origin",
    });
    if (!res.ok) throw new Error("the secret could not be read (HTTP " + res.status + ")");
    secret = (await res.json()).secret;
    return secret;
  };

  const revealButton = revealForm.querySelector("button");
  let shown = secret !== "";
  revealForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if (shown) {
        output.textContent = output.dataset.masked;
        revealButton.textContent = "Reveal";
        shown = false;
        announce("Secret hidden.");
        return;
      }
      output.textContent = await fetchSecret();
      revealButton.textContent = "Hide";
      shown = true;
      announce("Secret revealed.");
    } catch (err) {
      announce("Could not reveal the secret: " + err.message + ".");
    }
  });

  if (copyButton && navigator.clipboard) {
    copyButton.hidden = false;
    copyButton.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(await fetchSecret());
        announce("Secret copied to the clipboard.");
      } catch (err) {
        announce("Could not copy the secret: " + err.message + ".");
      }
    });
  }
});
