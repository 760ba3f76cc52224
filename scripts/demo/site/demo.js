// The demo pages' behaviour: what the session endpoint says, the API call,
// and the admin API's list of sessions. Plain fetch, same origin: the
// browser sends the session cookie itself.
"use strict";

const $ = (id) => document.getElementById(id);
const when = (t) => (t ? new Date(t).toLocaleString() : "never");

// When this browser's session began (userinfo's created_at): the admin
// API's list has no other way to tell which session is this one.
let mySessionCreated = null;

async function getJSON(path) {
	const resp = await fetch(path, { headers: { Accept: "application/json" } });
	let body = null;
	try {
		body = await resp.json();
	} catch (e) {
		body = null;
	}
	return { status: resp.status, body };
}

async function callAPI() {
	const out = $("api-result");
	out.textContent = "calling...";
	const resp = await fetch("/api/whoami", { headers: { Accept: "application/json" } });
	const challenge = resp.headers.get("WWW-Authenticate");
	out.textContent = `GET /api/whoami -> ${resp.status}\n` +
		(challenge ? `WWW-Authenticate: ${challenge}\n` : "") + (await resp.text());
	out.dataset.status = String(resp.status);
}

async function landing() {
	if (new URLSearchParams(location.search).has("signed_out")) {
		$("signed-out").hidden = false;
	}
	const { status, body } = await getJSON("/oauth2/session");
	const state = $("state");
	if (status === 200 && body && body.authenticated) {
		state.innerHTML = "You are signed in (session until <span></span>): <a href=\"/app/\">go to the protected area</a>.";
		state.querySelector("span").textContent = when(body.expires_at);
		$("sign-in").hidden = true;
	} else {
		state.textContent = "You are not signed in.";
	}
	state.dataset.authenticated = String(status === 200);
}

async function app() {
	const [status, info] = await Promise.all([getJSON("/oauth2/session"), getJSON("/oauth2/userinfo")]);
	if (status.status === 200) {
		$("expires-at").textContent = when(status.body.expires_at);
		$("idle-expires-at").textContent = when(status.body.idle_expires_at);
		$("token-expires-at").textContent = when(status.body.access_token_expires_at);
	}
	if (info.status === 200) {
		$("created-at").textContent = when(info.body.created_at);
		mySessionCreated = Date.parse(info.body.created_at);
		const claims = { sub: info.body.sub, email: info.body.email, email_verified: info.body.email_verified, name: info.body.name, groups: info.body.groups, ...info.body.claims };
		$("claims").textContent = JSON.stringify(claims, null, 2);
	}
	await listSessions();
}

async function listSessions() {
	const box = $("sessions");
	if (document.body.dataset.store === "cookie" || document.body.dataset.store === "") {
		box.innerHTML = "<p>The cookie store keeps each session in its browser only, so there is no list. Run " +
			"<code>scripts/demo.sh --store memory</code> or <code>--store redis</code> to see and end sessions here.</p>";
		return;
	}
	const { status, body } = await getJSON("/ops/sessions");
	if (status !== 200 || !body) {
		box.textContent = `The admin API answered ${status}.`;
		return;
	}
	const table = document.createElement("table");
	table.innerHTML = "<caption></caption><thead><tr><th>User</th><th>Provider</th><th>Signed in</th><th>Last seen</th><th>Ends</th><th></th></tr></thead><tbody></tbody>";
	table.caption.textContent = `${body.count} live session(s) in the ${document.body.dataset.store} store`;
	let mine = null;
	for (const s of body.sessions) {
		const row = table.tBodies[0].insertRow();
		row.dataset.id = s.id;
		const created = Date.parse(s.created);
		if (mySessionCreated !== null && Math.abs(created - mySessionCreated) < 1000 &&
			(mine === null || Math.abs(created - mySessionCreated) < mine.diff)) {
			mine = { row, diff: Math.abs(created - mySessionCreated) };
		}
		for (const v of [s.email || s.sub, s.provider || "", when(s.created), when(s.last_seen), when(s.expires)]) {
			row.insertCell().textContent = v;
		}
		const end = document.createElement("button");
		end.type = "button";
		end.className = "end";
		end.textContent = "End";
		end.setAttribute("aria-label", `End the session of ${s.email || s.sub} from ${when(s.created)}`);
		end.addEventListener("click", async () => {
			await fetch(`/ops/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
			await listSessions();
		});
		row.insertCell().append(end);
	}
	if (mine) {
		mine.row.classList.add("current");
		mine.row.cells[0].append(" (this browser)");
	}
	box.replaceChildren(table);
}

document.addEventListener("DOMContentLoaded", () => {
	$("call-api").addEventListener("click", callAPI);
	if (document.body.dataset.page === "landing") {
		landing();
	} else {
		app();
		setInterval(listSessions, 5000);
	}
});
