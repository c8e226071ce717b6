extension RunRatePage {
    /// The page's script: it asks for the run-rate, keeps every figure as the exact decimal text
    /// the API sent (the chart alone scales them to doubles for drawing), and draws each meter's
    /// card, chart (inline SVG) and tier table.
    static let script = Array(
        #"""
        "use strict";
        (() => {
          const refreshMilliseconds = 5000;
          const dayMilliseconds = 86400000;
          // Quantities have 18 decimals and up to 21 integer digits: more than a double holds. Figures
          // are kept as the API's decimal text and computed on with BigInt; doubles only draw the chart.
          const scale = 18;
          const one = 10n ** BigInt(scale);
          const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: scale });
          const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
          const svgNamespace = "http://www.w3.org/2000/svg";
          let token = readToken();
          let timer = null;
          let generation = 0;

          function readToken() {
            return new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
          }

          // JSON with every number kept as its source text (so 0.1 stays "0.1" and 21-digit figures stay
          // exact); a browser without source text access gives the double's text instead.
          function parseExact(text) {
            return JSON.parse(text, (key, value, context) => {
              if (typeof value !== "number") return value;
              return context && typeof context.source === "string" ? context.source : String(value);
            });
          }

          function isQuantity(value) { return typeof value === "string" && /^\d+(\.\d+)?$/.test(value); }

          // A quantity's text as a BigInt of 10^-18 units, or null.
          function units(value) {
            if (!isQuantity(value)) return null;
            const [whole, fraction = ""] = value.split(".");
            if (fraction.length > scale) return null;
            return BigInt(whole) * one + BigInt(fraction.padEnd(scale, "0"));
          }

          // A BigInt of 10^-digits units (≥ 0) as decimal text without trailing zeros.
          function decimal(amount, digits = scale) {
            const base = 10n ** BigInt(digits);
            const fraction = (amount % base).toString().padStart(digits, "0").replace(/0+$/, "");
            return (amount / base).toString() + (fraction ? "." + fraction : "");
          }

          function byId(id) { return document.getElementById(id); }

          function element(tag, className, text) {
            const node = document.createElement(tag);
            if (className) node.className = className;
            if (text !== undefined) node.textContent = text;
            return node;
          }

          function svg(tag, attributes, text) {
            const node = document.createElementNS(svgNamespace, tag);
            for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
            if (text !== undefined) node.textContent = text;
            return node;
          }

          function format(value) {
            if (value === "Infinite") return "Unlimited";
            if (!isQuantity(value)) return "–";
            return numbers.format(value);
          }

          function saturated(object, name) {
            return Boolean(object) && Array.isArray(object.saturated) && object.saturated.includes(name);
          }

          // A number of one meter, readable by tests and support staff: data-value is the JSON value. A
          // saturated figure (past the largest quantity) reads "… or more": its exact value is not known.
          function field(meter, name, value, options) {
            const settings = options || {};
            const node = element("span");
            node.setAttribute("data-meter", meter);
            node.setAttribute("data-field", name);
            node.setAttribute("data-value", value === undefined || value === null ? "" : String(value));
            let text = settings.text !== undefined ? settings.text : format(value);
            if (settings.saturated) {
              node.setAttribute("data-saturated", "true");
              text += " or more";
            }
            node.textContent = text;
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

          function utcDate(milliseconds, withYear) {
            const options = { timeZone: "UTC", month: "short", day: "numeric" };
            if (withYear !== false) options.year = "numeric";
            return new Date(milliseconds).toLocaleDateString(undefined, options);
          }

          function utcMonth(milliseconds) {
            return new Date(milliseconds).toLocaleDateString(undefined, { timeZone: "UTC", month: "short", year: "numeric" });
          }

          function row(list, label, nodes, alert) {
            list.append(element("dt", "", label));
            const cell = element("dd", alert ? "alert" : "");
            cell.append(...nodes);
            list.append(cell);
          }

          // MARK: Money, only when the answer carries display prices.

          function price(object) {
            const candidate = object && object.price;
            if (!candidate || typeof candidate.currency !== "string" || units(candidate.perUnit) === null) return null;
            try {
              return { currency: candidate.currency, perUnit: units(candidate.perUnit),
                format: new Intl.NumberFormat(undefined, { style: "currency", currency: candidate.currency }) };
            } catch (ignored) {
              return null;
            }
          }

          // What `amount` (10^-18 units) costs at `unitPrice`, exactly, as decimal text.
          function cost(amount, unitPrice) { return decimal(amount * unitPrice.perUnit, 2 * scale); }

          function money(meter, name, amount, unitPrice, isSaturated) {
            const exact = cost(amount, unitPrice);
            return field(meter, name, exact, { text: unitPrice.format.format(exact), saturated: isSaturated });
          }

          // MARK: Waterfall tiers

          function tiersOf(meter) {
            return Array.isArray(meter.tiers) ? meter.tiers.filter((tier) => tier && typeof tier === "object") : [];
          }

          // Each tier's band start in the period's running total, from `from` or, for an older answer,
          // from the thresholds (the free band is the first threshold).
          function tierStarts(tiers) {
            let total = 0n;
            return tiers.map((tier) => {
              total += units(tier.threshold) || 0n;
              const from = units(tier.from);
              return from !== null ? from : total;
            });
          }

          // Per tier, how much of `amount` falls in its band.
          function tierShares(starts, amount) {
            return starts.map((start, index) => {
              const end = index + 1 < starts.length ? starts[index + 1] : null;
              const top = end !== null && amount > end ? end : amount;
              return top > start ? top - start : 0n;
            });
          }

          // The cost of `amount` spread over the tiers' bands, or null unless every tier has a price in
          // one currency.
          function tierCost(tiers, starts, amount) {
            const prices = tiers.map(price);
            if (prices.length === 0 || prices.some((each) => each === null || each.currency !== prices[0].currency)) return null;
            const shares = tierShares(starts, amount);
            let total = 0n;
            shares.forEach((share, index) => { total += share * prices[index].perUnit; });
            return { exact: decimal(total, 2 * scale), format: prices[0].format, prices: prices };
          }

          // MARK: The chart

          // The start and end (milliseconds) of a series point's step, inside the period.
          function stepBounds(point, step, start, end) {
            const from = Date.parse(point.start);
            if (isNaN(from)) return null;
            const date = new Date(from);
            const to = step === "month" ? Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1) : from + dayMilliseconds;
            return [Math.max(from, start), Math.min(to, end)];
          }

          function niceStep(maximum) {
            const raw = maximum / 4;
            const power = 10 ** Math.floor(Math.log10(raw));
            for (const factor of [1, 2, 2.5, 5, 10]) if (factor * power >= raw) return factor * power;
            return raw;
          }

          // Usage per day (or month) of the period as inline SVG: for summed and tiered meters each
          // step's usage is a bar stacked on the steps before it, so the bar tops climb to what is used
          // so far and meet the included line where overage starts; the dashed line goes on to the
          // projection at the period's end. For a gauge each bar is the step's reading.
          function chart(meter, runrate) {
            const series = meter.series;
            const period = runrate.period || {};
            const start = Date.parse(period.start), end = Date.parse(period.end);
            if (!series || !Array.isArray(series.points) || isNaN(start) || isNaN(end) || end <= start) return null;
            const name = meter.meterName;
            const gauge = meter.kind === "max" || meter.kind === "last";
            const step = series.step === "month" ? "month" : "day";
            const asOf = Math.min(Math.max(Date.parse(runrate.asOf) || start, start), end);
            const width = 320, height = 180, left = 40, right = 10, top = 16, bottom = 24;
            const plotWidth = width - left - right, plotHeight = height - top - bottom;
            const x = (time) => left + plotWidth * (time - start) / (end - start);

            const points = series.points.filter((point) => point && units(point.quantity) !== null);
            const consumed = units(meter.consumed) || 0n;
            let placed = 0n;
            for (const point of points) placed += units(point.quantity);
            // Usage the series does not place on a day (kept before the series existed) starts the stack.
            const before = !gauge && consumed > placed ? consumed - placed : 0n;
            const included = isQuantity(meter.included) ? meter.included : null;
            const projected = !gauge && isQuantity(meter.projected) ? meter.projected : null;

            let highest = Math.max(Number(decimal(before)), included !== null ? Number(included) : 0, projected !== null ? Number(projected) : 0);
            let running = before;
            for (const point of points) {
              running = gauge ? units(point.quantity) : running + units(point.quantity);
              highest = Math.max(highest, Number(decimal(running)));
            }
            highest = highest > 0 ? highest * 1.08 : 1;
            const y = (value) => top + plotHeight - plotHeight * Math.min(value, highest) / highest;

            const box = element("figure", "chart");
            const picture = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "data-meter": name, "data-field": "chart",
              "data-step": step, "data-value": String(points.length) });
            const stepName = step === "month" ? "month" : "day";
            const summary = points.length === 0 ? "No usage yet this period." :
              "Usage per " + stepName + ": " + points.length + " " + stepName + (points.length === 1 ? "" : "s") + " with usage.";
            picture.setAttribute("aria-label", summary);

            const grid = niceStep(highest / 1.08 || 1);
            for (let value = 0; value <= highest; value += grid) {
              picture.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
              picture.append(svg("text", { class: "axis", x: left - 4, y: y(value) + 4, "text-anchor": "end" }, compact.format(value)));
            }

            // What is used so far, as a line climbing with each step: the bars' tops, carried on to now,
            // where the projection takes over.
            if (!gauge && (points.length > 0 || before > 0n)) {
              let total = before;
              let path = "M" + left + " " + y(Number(decimal(total)));
              for (const point of points) {
                const bounds = stepBounds(point, step, start, end);
                if (!bounds) continue;
                total += units(point.quantity);
                path += " H" + x(bounds[0]) + " V" + y(Number(decimal(total)));
              }
              path += " H" + x(asOf);
              picture.append(svg("path", { class: "used-area", d: path + " V" + y(0) + " H" + left + " Z" }));
              picture.append(svg("path", { class: "used-line", d: path }));
            }

            running = before;
            for (const point of points) {
              const bounds = stepBounds(point, step, start, end);
              if (!bounds) continue;
              const amount = units(point.quantity);
              const low = gauge ? 0n : running;
              running = gauge ? amount : running + amount;
              const gap = Math.min(1.5, (x(bounds[1]) - x(bounds[0])) / 6);
              const over = included !== null && units(included) !== null && running > units(included);
              const bottomY = y(Number(decimal(low))), topY = y(Number(decimal(running)));
              const mark = svg("rect", { class: over ? "mark over" : "mark", x: x(bounds[0]) + gap, width: Math.max(1, x(bounds[1]) - x(bounds[0]) - 2 * gap),
                y: Math.min(topY, bottomY - 1), height: Math.max(1, bottomY - topY), "data-meter": name, "data-field": "chart.day",
                "data-day": point.start, "data-value": point.quantity });
              const label = (step === "month" ? utcMonth(bounds[0]) : utcDate(bounds[0], false)) + ": " + format(point.quantity) +
                (saturated(point, "quantity") ? " or more" : "") + (gauge ? "" : " (" + numbers.format(decimal(running)) + " so far)");
              mark.append(svg("title", {}, label));
              picture.append(mark);
            }

            // A waterfall meter's tiers above the free band, where they are in view.
            tierStarts(tiersOf(meter)).forEach((from, index) => {
              const value = Number(decimal(from));
              if (index === 0 || value >= highest) return;
              picture.append(svg("line", { class: "tier", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
              picture.append(svg("text", { class: "tier-label", x: left + 4, y: y(value) - 4 }, "tier " + (index + 1)));
            });
            if (included !== null) {
              const lineY = y(Number(included));
              picture.append(svg("line", { class: "included", x1: left, x2: width - right, y1: lineY, y2: lineY, "data-meter": name,
                "data-field": "chart.included", "data-value": included }));
              picture.append(svg("text", { class: "label", x: left + 4, y: lineY - 4 }, compact.format(Number(included)) + " included"));
            }
            if (projected !== null && asOf < end) {
              const fromY = y(Number(decimal(consumed))), toY = y(Number(projected));
              picture.append(svg("line", { class: "projection", x1: x(asOf), y1: fromY, x2: x(end), y2: toY, "data-meter": name,
                "data-field": "chart.projected", "data-value": projected }));
              picture.append(svg("circle", { class: "projection-end", cx: x(end), cy: toY, r: 3 }));
              picture.append(svg("text", { class: "label", x: width - right, y: Math.max(top - 4, toY - 7), "text-anchor": "end" },
                compact.format(Number(projected)) + (saturated(meter, "projected") ? "+" : "") + " projected"));
            }
            picture.append(svg("line", { class: "axis-line", x1: left, x2: width - right, y1: y(0), y2: y(0) }));
            const lastDay = step === "month" ? utcMonth(end - 1) : utcDate(end - 1, false);
            const firstDay = step === "month" ? utcMonth(start) : utcDate(start, false);
            picture.append(svg("text", { class: "axis", x: left, y: height - 6 }, firstDay));
            picture.append(svg("text", { class: "axis", x: width - right, y: height - 6, "text-anchor": "end" }, lastDay));
            // Where "now" is, when the labels at the ends leave room for it.
            if (x(asOf) - left > 60 && width - right - x(asOf) > 60) {
              picture.append(svg("line", { class: "now", x1: x(asOf), x2: x(asOf), y1: top, y2: y(0) + 4 }));
              picture.append(svg("text", { class: "axis", x: x(asOf), y: height - 6, "text-anchor": "middle" },
                step === "month" ? utcMonth(asOf) : utcDate(asOf, false)));
            }
            box.append(picture);

            const caption = element("figcaption");
            if (points.length === 0) {
              caption.append(element("span", "note", "No usage yet this period."));
            } else if (gauge) {
              caption.append(element("span", "key used", (meter.kind === "max" ? "Highest" : "Latest") + " reading per " + stepName));
            } else {
              caption.append(element("span", "key used", "Usage per " + stepName), element("span", "key total", "Used so far"));
            }
            if (included !== null) caption.append(element("span", "key included", "Included"));
            if (projected !== null && asOf < end) caption.append(element("span", "key projected", "Projected to the period's end"));
            if (before > 0n) caption.append(element("span", "note", numbers.format(decimal(before)) + " used before the daily figures were kept"));
            box.append(caption);
            return box;
          }

          // MARK: A meter's card

          function bar(meter) {
            const included = meter.included;
            const consumed = isQuantity(meter.consumed) ? Number(meter.consumed) : 0;
            const track = element("div", "bar");
            track.setAttribute("data-meter", meter.meterName);
            track.setAttribute("data-field", "bar");
            if (included === "Infinite") {
              track.classList.add("unlimited");
              return track;
            }
            const used = element("div", "used"), over = element("div", "over");
            const limit = isQuantity(included) ? Number(included) : 0;
            if (limit > 0 && consumed <= limit) {
              used.style.width = (100 * consumed / limit) + "%";
            } else if (consumed > 0) {
              const share = limit > 0 ? limit / consumed : 0;
              used.style.width = (100 * share) + "%";
              over.style.width = (100 * (1 - share)) + "%";
            }
            track.append(used, over);
            return track;
          }

          function meterCard(meter, runrate) {
            const name = meter.meterName;
            const gauge = meter.kind === "max" || meter.kind === "last";
            const tiers = tiersOf(meter);
            const waterfall = meter.kind === "waterfall" || tiers.length > 0;
            const consumed = units(meter.consumed);
            const card = element("section", "meter");
            card.setAttribute("data-meter", name);
            card.append(element("h2", "", name));

            const headline = element("p", "headline");
            const unlimited = meter.included === "Infinite";
            const starts = tierStarts(tiers);
            headline.append(field(name, "consumed", meter.consumed));
            if (waterfall) {
              // As `meterctl runrate` reads it: "15,000 used; 100 included; tier 2 from 10,100".
              const rest = element("span", "of", " used; ");
              rest.append(field(name, "included", meter.included), " included");
              let current = -1;
              starts.forEach((start, index) => { if (consumed !== null && consumed > start) current = index; });
              if (current >= 0) {
                rest.append("; ", field(name, "currentTier", String(current + 1), { text: "tier " + (current + 1) }), " from ",
                  field(name, "currentTierFrom", decimal(starts[current])));
              }
              headline.append(rest);
            } else {
              const of = element("span", "of", unlimited ? " used · " : " used of ");
              of.append(field(name, "included", meter.included, { text: unlimited ? "unlimited" : undefined }), " included");
              headline.append(of);
            }
            card.append(headline, bar(meter));

            const note = element("p", "note");
            if (gauge) {
              note.textContent = meter.kind === "max" ? "Billed on the period's highest reading, once the period ends." :
                "Billed on the period's last reading, once the period ends.";
            } else if (unlimited) {
              note.textContent = "Unlimited usage is included in your plan.";
            } else if (!waterfall && isQuantity(meter.included) && units(meter.included) > 0n && consumed !== null) {
              const share = Math.round(Number(consumed * 100n / units(meter.included)));
              note.append(field(name, "usedPercent", share, { text: numbers.format(share) + " % of the included quantity" }));
            } else if (!waterfall) {
              note.textContent = "Nothing is included: all usage is billed as overage.";
            }
            if (note.childNodes.length > 0) card.append(note);

            const unitPrice = waterfall ? null : price(meter);
            const overage = units(meter.overage);
            const list = element("dl");
            row(list, "Remaining", [field(name, "remaining", meter.remaining)]);
            const overageNodes = [field(name, "overage", meter.overage)];
            if (waterfall && overage !== null) {
              const charged = tierCost(tiers, starts, consumed || 0n);
              if (charged) overageNodes.push(" · ", field(name, "overageCost", charged.exact, { text: charged.format.format(charged.exact) }));
            } else if (unitPrice && overage !== null) {
              overageNodes.push(" · ", money(name, "overageCost", overage, unitPrice, false));
            }
            row(list, gauge ? "Overage if the period ended now" : "Overage so far", overageNodes, overage !== null && overage > 0n);
            // Corrections: usage taken back this period, and accepted overage it freed, netted later.
            if (meter.voided !== undefined) row(list, "Corrected this period (voided usage)", [field(name, "voided", meter.voided)]);
            if (meter.credit !== undefined) row(list, "Credit against later overage", [field(name, "credit", meter.credit)]);
            if (!gauge) {
              const projectedSaturated = saturated(meter, "projected");
              row(list, "Projected by period end", [field(name, "projected", meter.projected, { saturated: projectedSaturated })]);
              const projected = units(meter.projected), included = units(meter.included);
              if (projected !== null && included !== null && projected > included) {
                const nodes = [field(name, "projectedOverage", decimal(projected - included), { saturated: projectedSaturated })];
                const charged = waterfall ? tierCost(tiers, starts, projected) : null;
                if (charged) {
                  nodes.push(" · ", field(name, "projectedOverageCost", charged.exact, { text: charged.format.format(charged.exact), saturated: projectedSaturated }));
                } else if (unitPrice) {
                  nodes.push(" · ", money(name, "projectedOverageCost", projected - included, unitPrice, projectedSaturated));
                }
                row(list, "Projected overage", nodes, true);
              }
            }
            card.append(list);

            const drawn = chart(meter, runrate);
            if (drawn) card.append(drawn);

            if (tiers.length > 0) {
              card.append(element("h3", "", "Tiers"));
              const table = element("table");
              const charged = tierCost(tiers, starts, consumed || 0n);
              const head = element("tr");
              head.append(element("th", "", "Tier"), element("th", "number", "From"), element("th", "number", "Used"));
              if (charged) head.append(element("th", "number", "Cost"));
              table.append(head);
              const shares = tierShares(starts, consumed || 0n);
              tiers.forEach((tier, index) => {
                const current = consumed !== null && consumed > starts[index] && (index + 1 === tiers.length || consumed <= starts[index + 1]);
                const line = element("tr", current ? "current" : "");
                line.setAttribute("data-meter", name);
                line.setAttribute("data-tier", String(index + 1));
                const label = element("td", "", "Tier " + (index + 1));
                const from = element("td", "number"), used = element("td", "number");
                from.append(field(name, "tierFrom", decimal(starts[index])));
                used.append(field(name, "tierConsumed", tier.consumed));
                line.append(label, from, used);
                if (charged) {
                  const amount = element("td", "number");
                  const exact = cost(shares[index], charged.prices[index]);
                  amount.append(field(name, "tierCost", exact, { text: charged.format.format(exact) }));
                  line.append(amount);
                }
                table.append(line);
              });
              card.append(table);
            }

            // What support staff ask about, folded away: marketplace dimensions and reporting.
            const details = element("details", "technical");
            details.append(element("summary", "", "Details"));
            const technical = element("dl");
            if (tiers.length > 0) {
              tiers.forEach((tier, index) => {
                row(technical, "Tier " + (index + 1) + " dimension", [field(name, "tierDimension", tier.dimension, { text: String(tier.dimension) })]);
              });
            } else {
              row(technical, "Billing dimension", [field(name, "dimension", meter.dimension, { text: String(meter.dimension || "–") })]);
            }
            const marketplace = meter.marketplace || {};
            row(technical, "Overage this hour, not yet reported",
              [field(name, "openHourOverage", meter.openHourOverage, { saturated: saturated(meter, "openHourOverage") })]);
            row(technical, "Waiting to be reported", [field(name, "marketplace.pending", marketplace.pending, { saturated: saturated(marketplace, "pending") })]);
            row(technical, "Accepted by the marketplace",
              [field(name, "marketplace.accepted", marketplace.accepted, { saturated: saturated(marketplace, "accepted") })]);
            row(technical, "Refused by the marketplace (not charged)",
              [field(name, "marketplace.rejected", marketplace.rejected, { saturated: saturated(marketplace, "rejected") })]);
            details.append(technical);
            card.append(details);
            return card;
          }

          function render(runrate) {
            setValue("subscription", runrate.resourceId || runrate.resourceUri,
              "Subscription " + (runrate.resourceId || runrate.resourceUri || ""));
            // The plans of the current period: the one in force, since when, and those before it.
            const plans = Array.isArray(runrate.plans) ? runrate.plans.filter((plan) => plan && typeof plan.planId === "string") : [];
            let planText = runrate.planId ? "Plan " + runrate.planId : "";
            if (runrate.planId && plans.length > 1) {
              const since = Date.parse(plans[plans.length - 1].from);
              planText += (isNaN(since) ? "" : " since " + utcDate(since)) + " (earlier this period: " +
                plans.slice(0, -1).map((plan) => plan.planId).join(", ") + ")";
            }
            setValue("plan", runrate.planId, planText);
            const period = runrate.period || {};
            const start = Date.parse(period.start), end = Date.parse(period.end);
            if (!isNaN(start) && !isNaN(end)) {
              // The period's end is the exclusive midnight at which it renews: show its last day.
              setValue("period", period.end, "Period " + utcDate(start) + " – " + utcDate(end - 1));
              // Counted from the log time the figures are valid at (the only business clock), so a
              // page of a stack on a manual clock, or one catching up, tells the truth.
              const validAt = Date.parse(runrate.asOf);
              const days = Math.max(0, Math.floor((end - (isNaN(validAt) ? Date.now() : validAt)) / dayMilliseconds));
              const words = days === 0 ? "Less than a day left" : days === 1 ? "1 day left" : numbers.format(days) + " days left";
              setValue("days-left", days, words + ", then included quantities refill on " + utcDate(end));
            }
            const asOf = Date.parse(runrate.asOf);
            setValue("as-of", runrate.asOf, isNaN(asOf) ? "" : "Figures as of " + new Date(asOf).toLocaleString());
            const meters = Array.isArray(runrate.meters) ? runrate.meters : [];
            // An open "Details" stays open across refreshes.
            const open = new Set([...document.querySelectorAll("section.meter details[open]")].map((node) => node.parentNode.getAttribute("data-meter")));
            byId("meters").replaceChildren(...meters.filter((meter) => meter && typeof meter.meterName === "string").map((meter) => {
              const card = meterCard(meter, runrate);
              if (open.has(meter.meterName)) card.querySelector("details").open = true;
              return card;
            }));
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
              try { body = parseExact(await response.text()); } catch (ignored) { body = null; }
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
