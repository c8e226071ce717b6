/// The run-rate page: what a customer sees of their subscription's usage. Three small files and
/// no external assets, so it works offline of any CDN and under `default-src 'self'`.
///
/// The page reads its token from the URL fragment (`#token=...`): a fragment never reaches a
/// server's access log nor a `Referer`. It asks `api/runrate` (a relative URL, so the page also
/// works behind a reverse proxy under a path ending in `/`) every few seconds. Every number it
/// shows is an element with `data-meter`, `data-field` and `data-value` (the JSON value as sent),
/// so tests and support staff can read the DOM without parsing formatted text.
enum RunRatePage {
    static let html = Array(
        #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>Usage this billing period</title>
        <link rel="stylesheet" href="app.css">
        <script src="app.js" defer></script>
        </head>
        <body>
        <header>
        <h1>Usage this billing period</h1>
        <p class="summary"><span id="subscription"></span> <span id="plan"></span></p>
        <p class="summary"><span id="period"></span> <span id="days-left"></span></p>
        <p id="status" role="status" aria-live="polite" data-state="loading">Loading…</p>
        <p id="detail"></p>
        </header>
        <main id="meters"></main>
        <footer><span id="as-of"></span></footer>
        <noscript><p>This page needs JavaScript to show your usage.</p></noscript>
        </body>
        </html>

        """#.utf8)

    static let style = Array(
        #"""
        :root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --card: #ffffff; --back: #f5f7fa;
          --used: #2563eb; --over: #dc2626; --ok: #15803d; --warn: #b45309; }
        * { box-sizing: border-box; }
        body { margin: 0; padding: 24px; background: var(--back); color: var(--ink);
          font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; }
        header, main, footer { max-width: 1100px; margin: 0 auto; }
        h1 { font-size: 22px; margin: 0 0 6px; }
        .summary { margin: 2px 0; color: var(--muted); }
        .summary span:not(:empty) + span:not(:empty)::before { content: "· "; }
        #status { margin: 10px 0 0; font-weight: 600; }
        #status[data-state="live"] { color: var(--ok); }
        #status[data-state="live"]::before { content: "● "; }
        #status[data-state="offline"], #status[data-state="unavailable"], #status[data-state="notfound"] { color: var(--warn); }
        #status[data-state="unauthorized"], #status[data-state="forbidden"], #status[data-state="notoken"],
        #status[data-state="error"] { color: var(--over); }
        #detail { margin: 2px 0 0; color: var(--muted); font-size: 13px; }
        #detail:empty { display: none; }
        main { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); align-items: start; gap: 16px;
          margin-top: 18px; }
        body[data-stale="true"] main { opacity: 0.55; }
        .meter { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; }
        .meter h2 { font-size: 17px; margin: 0; overflow-wrap: anywhere; }
        .dimension { color: var(--muted); font-size: 13px; margin: 0 0 10px; overflow-wrap: anywhere; }
        .headline { font-size: 20px; margin: 0 0 6px; }
        .headline .of { color: var(--muted); font-size: 15px; }
        .bar { display: flex; height: 12px; border-radius: 6px; background: var(--line); overflow: hidden; }
        .bar .used { background: var(--used); }
        .bar .over { background: var(--over); }
        .bar.unlimited { background: repeating-linear-gradient(45deg, #c7d7fe, #c7d7fe 6px, #e0e7ff 6px, #e0e7ff 12px); }
        .percent { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
        dl { display: grid; grid-template-columns: 1fr auto; gap: 4px 12px; margin: 0; }
        dt { color: var(--muted); }
        dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
        dd.alert { color: var(--over); font-weight: 600; }
        h3 { font-size: 13px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); margin: 14px 0 6px; }
        table { width: 100%; border-collapse: collapse; font-size: 14px; }
        th { text-align: left; color: var(--muted); font-weight: 500; }
        th, td { padding: 3px 0; border-bottom: 1px solid var(--line); }
        td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
        tr.current td { font-weight: 600; }
        footer { margin-top: 18px; color: var(--muted); font-size: 13px; }

        """#.utf8)

    static let script = Array(
        #"""
        "use strict";
        (() => {
          const refreshMilliseconds = 5000;
          const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });
          let token = readToken();
          let timer = null;
          let generation = 0;

          function readToken() {
            return new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
          }

          function byId(id) { return document.getElementById(id); }

          function element(tag, className, text) {
            const node = document.createElement(tag);
            if (className) node.className = className;
            if (text !== undefined) node.textContent = text;
            return node;
          }

          function format(value) {
            if (value === "Infinite") return "Unlimited";
            if (typeof value !== "number") return "–";
            return numbers.format(value);
          }

          // A number of one meter, readable by tests and support staff: data-value is the JSON value.
          function field(meter, name, value, text) {
            const node = element("span");
            node.setAttribute("data-meter", meter);
            node.setAttribute("data-field", name);
            node.setAttribute("data-value", value === undefined || value === null ? "" : String(value));
            node.textContent = text !== undefined ? text : format(value);
            return node;
          }

          function setValue(id, value, text) {
            const node = byId(id);
            node.setAttribute("data-value", value === undefined || value === null ? "" : String(value));
            node.textContent = text;
          }

          function setStatus(state, text, detail) {
            const status = byId("status");
            status.setAttribute("data-state", state);
            status.textContent = text;
            byId("detail").textContent = detail || "";
          }

          function utcDate(milliseconds) {
            return new Date(milliseconds).toLocaleDateString(undefined, { timeZone: "UTC", year: "numeric", month: "short", day: "numeric" });
          }

          function row(list, label, node, alert) {
            list.append(element("dt", "", label));
            const cell = element("dd", alert ? "alert" : "");
            cell.append(node);
            list.append(cell);
          }

          function bar(meter) {
            const included = meter.included, consumed = typeof meter.consumed === "number" ? meter.consumed : 0;
            const track = element("div", "bar");
            track.setAttribute("data-meter", meter.meterName);
            track.setAttribute("data-field", "bar");
            if (included === "Infinite") {
              track.classList.add("unlimited");
              return track;
            }
            const used = element("div", "used"), over = element("div", "over");
            if (typeof included === "number" && included > 0 && consumed <= included) {
              used.style.width = (100 * consumed / included) + "%";
            } else if (consumed > 0) {
              const share = typeof included === "number" && included > 0 ? included / consumed : 0;
              used.style.width = (100 * share) + "%";
              over.style.width = (100 * (1 - share)) + "%";
            }
            track.append(used, over);
            return track;
          }

          function meterCard(meter) {
            const name = meter.meterName;
            const card = element("section", "meter");
            card.setAttribute("data-meter", name);
            card.append(element("h2", "", name));
            card.append(element("p", "dimension", "Dimension: " + (meter.dimension || "–")));

            const headline = element("p", "headline");
            headline.append(field(name, "consumed", meter.consumed));
            const unlimited = meter.included === "Infinite";
            const of = element("span", "of", unlimited ? " used · " : " used of ");
            of.append(field(name, "included", meter.included, unlimited ? "unlimited" : undefined), " included");
            headline.append(of);
            card.append(headline, bar(meter));

            const percent = element("p", "percent");
            if (typeof meter.included === "number" && meter.included > 0 && typeof meter.consumed === "number") {
              const share = 100 * meter.consumed / meter.included;
              percent.append(field(name, "usedPercent", Math.round(share), numbers.format(Math.round(share)) + " % of the included quantity"));
            } else if (meter.included === "Infinite") {
              percent.textContent = "Unlimited usage is included in your plan.";
            } else {
              percent.textContent = "Nothing is included: all usage is billed as overage.";
            }
            card.append(percent);

            const list = element("dl");
            row(list, "Remaining", field(name, "remaining", meter.remaining));
            row(list, "Overage so far", field(name, "overage", meter.overage), typeof meter.overage === "number" && meter.overage > 0);
            row(list, "Overage this hour", field(name, "openHourOverage", meter.openHourOverage));
            row(list, "Projected by period end", field(name, "projected", meter.projected));
            if (typeof meter.included === "number" && typeof meter.projected === "number" && meter.projected > meter.included) {
              const projectedOverage = meter.projected - meter.included;
              row(list, "Projected overage", field(name, "projectedOverage", projectedOverage), true);
            }
            card.append(list);

            const marketplace = meter.marketplace || {};
            card.append(element("h3", "", "Reported to the marketplace"));
            const reported = element("dl");
            row(reported, "Pending", field(name, "marketplace.pending", marketplace.pending));
            row(reported, "Accepted", field(name, "marketplace.accepted", marketplace.accepted));
            row(reported, "Rejected", field(name, "marketplace.rejected", marketplace.rejected),
              typeof marketplace.rejected === "number" && marketplace.rejected > 0);
            row(reported, "Conflicts", field(name, "marketplace.conflicts", marketplace.conflicts),
              typeof marketplace.conflicts === "number" && marketplace.conflicts > 0);
            card.append(reported);

            if (Array.isArray(meter.tiers) && meter.tiers.length > 0) {
              card.append(element("h3", "", "Tiers"));
              const table = element("table");
              const head = element("tr");
              head.append(element("th", "", "Tier"), element("th", "number", "Threshold"), element("th", "number", "Consumed"));
              table.append(head);
              for (const tier of meter.tiers) {
                const line = element("tr", tier.dimension === meter.dimension ? "current" : "");
                line.setAttribute("data-meter", name);
                line.setAttribute("data-tier", String(tier.dimension));
                const label = element("td", "", String(tier.dimension));
                const from = element("td", "number"), used = element("td", "number");
                from.append(field(name, "tierThreshold", tier.threshold));
                used.append(field(name, "tierConsumed", tier.consumed));
                line.append(label, from, used);
                table.append(line);
              }
              card.append(table);
            }
            return card;
          }

          function render(runrate) {
            setValue("subscription", runrate.resourceId || runrate.resourceUri,
              "Subscription " + (runrate.resourceId || runrate.resourceUri || ""));
            setValue("plan", runrate.planId, runrate.planId ? "Plan " + runrate.planId : "");
            const period = runrate.period || {};
            const start = Date.parse(period.start), end = Date.parse(period.end);
            if (!isNaN(start) && !isNaN(end)) {
              // The period's end is the exclusive midnight at which it renews: show its last day.
              setValue("period", period.end, "Period " + utcDate(start) + " – " + utcDate(end - 1));
              // Counted from the log time the figures are valid at (the only business clock), so a
              // page of a stack on a manual clock, or one catching up, tells the truth.
              const validAt = Date.parse(runrate.asOf);
              const days = Math.max(0, (end - (isNaN(validAt) ? Date.now() : validAt)) / 86400000);
              setValue("days-left", days.toFixed(1), days.toFixed(1) + " days left, then included quantities refill");
            }
            const asOf = Date.parse(runrate.asOf);
            setValue("as-of", runrate.asOf, isNaN(asOf) ? "" : "Figures as of " + new Date(asOf).toLocaleString());
            const meters = Array.isArray(runrate.meters) ? runrate.meters : [];
            byId("meters").replaceChildren(...meters.filter((meter) => meter && typeof meter.meterName === "string").map(meterCard));
            if (meters.length === 0) byId("meters").append(element("p", "", "This plan has no metered dimensions."));
          }

          function schedule() {
            clearTimeout(timer);
            timer = setTimeout(load, refreshMilliseconds);
          }

          function clear() {
            byId("meters").replaceChildren();
            for (const id of ["subscription", "plan", "period", "days-left", "as-of"]) setValue(id, "", "");
          }

          async function load() {
            const mine = generation;
            let response, body = null;
            try {
              response = await fetch("api/runrate", {
                headers: { "Authorization": "Bearer " + token }, cache: "no-store", credentials: "omit"
              });
              try { body = await response.json(); } catch (ignored) { body = null; }
            } catch (error) {
              if (mine !== generation) return;
              document.body.setAttribute("data-stale", "true");
              setStatus("offline", "Cannot reach the server; retrying…");
              schedule();
              return;
            }
            if (mine !== generation) return;
            const message = body && body.error && typeof body.error.message === "string" ? body.error.message : "";
            if (response.status === 200 && body && body.ok === true) {
              document.body.removeAttribute("data-stale");
              render(body);
              setStatus("live", "Live: updated every " + refreshMilliseconds / 1000 + " seconds");
              schedule();
            } else if (response.status === 401) {
              clear();
              const expired = body && body.error && body.error.reason === "expired";
              setStatus("unauthorized", expired ? "This link has expired: ask for a new one." : "This link is not valid: ask for a new one.", message);
            } else if (response.status === 403) {
              clear();
              setStatus("forbidden", "This link does not give access to this subscription's usage.", message);
            } else if (response.status === 404) {
              clear();
              setStatus("notfound", "No usage is known for this subscription yet; checking again…", message);
              schedule();
            } else {
              document.body.setAttribute("data-stale", "true");
              setStatus(response.status === 503 ? "unavailable" : "error",
                "The usage figures are not available right now (" + response.status + "); retrying…", message);
              schedule();
            }
          }

          function start() {
            generation += 1;
            clearTimeout(timer);
            clear();
            if (!token) {
              setStatus("notoken", "This page needs the link you were given: it ends in #token=….");
              return;
            }
            setStatus("loading", "Loading…");
            load();
          }

          window.addEventListener("hashchange", () => { token = readToken(); start(); });
          start();
        })();

        """#.utf8)
}
