// beatd web: live updates and actions without a reload. The pages work without this file: forms post and
// redirect back, and a reload shows the news. With it, every element marked data-live is refreshed from the
// same page every few seconds (only while the tab is visible; backing off when the server does not answer),
// and action forms (data-action) post in the background, then refresh at once.
"use strict";
(function () {
  const PERIOD = 3000;      // ms between refreshes
  const LONGEST = 60000;    // ms: the longest wait after failures
  let wait = PERIOD;
  let timer = null;
  const state = document.getElementById("live-state");

  function show(text, bad) {
    const flash = document.getElementById("flash");
    if (!flash) return;
    flash.textContent = text;
    flash.hidden = false;
    flash.classList.toggle("bad", Boolean(bad));
  }

  async function refresh() {
    const regions = document.querySelectorAll("[data-live][id]");
    if (!regions.length) return;
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "X-Beatd-Live": "1" } });
    if (!response.ok) throw new Error("HTTP " + response.status);
    // The fresh page is parsed inert (DOMParser runs no script) and its nodes are moved in as they are: no
    // markup is ever serialized and parsed again (innerHTML), so what the server escaped stays text.
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of regions) {
      const fresh = page.getElementById(region.id);
      if (fresh && !fresh.isEqualNode(region) && !region.contains(document.activeElement)) {
        region.replaceChildren(...Array.from(fresh.childNodes)); // moved in, adopted by this document
      }
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  }

  async function tick() {
    if (document.hidden) return; // resumed by visibilitychange
    try {
      await refresh();
      wait = PERIOD;
      if (state) state.className = "live on";
    } catch (error) {
      wait = Math.min(wait * 2, LONGEST);
      if (state) state.className = "live off";
    }
    schedule(wait);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule(0);
  });

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-action")) return;
    event.preventDefault();
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur(); // let its region refresh
    const body = new URLSearchParams(new FormData(form));
    try {
      const response = await fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": body.get("csrf") || "" },
      });
      const reply = await response.json();
      show(response.ok ? reply.message || "done" : reply.error || "refused", !response.ok);
    } catch (error) {
      show("the server did not answer: " + error.message, true);
    }
    schedule(0);
  });

  schedule(PERIOD);
})();
