// Progressive enhancement only: every page works without this file (CSP: no inline script).
import { initAll } from './govuk/govuk-frontend.min.js'

document.body.classList.add('js-enabled', 'govuk-frontend-supported')
initAll()

function duration (seconds) {
  const d = Math.floor(seconds / 86400)
  const h = Math.floor((seconds % 86400) / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  if (d) return `${d} d ${h} h`
  if (h) return `${h} h ${m} min`
  if (m) return `${m} min`
  return `${seconds % 60} s`
}

// Countdowns to each deadline, ticking once a second.
function tick () {
  const now = Date.now()
  for (const el of document.querySelectorAll('[data-deadline]')) {
    const left = Math.round((Date.parse(el.dataset.deadline) - now) / 1000)
    el.textContent = left < 0 ? `overdue by ${duration(-left)}` : `in ${duration(left)}`
  }
}
setInterval(tick, 1000)
tick()

// The open-episodes list refreshes itself every 15 seconds (the same page, re-read).
const live = document.querySelector('[data-refresh]')
if (live) {
  setInterval(async () => {
    try {
      const answer = await fetch(window.location.href, { credentials: 'same-origin' })
      if (!answer.ok || answer.redirected) return
      const page = new DOMParser().parseFromString(await answer.text(), 'text/html')
      const fresh = page.getElementById(live.id)
      const current = document.getElementById(live.id)
      if (fresh && current) { current.replaceWith(fresh); tick() }
    } catch (e) { /* the next round tries again */ }
  }, 15000)
}
