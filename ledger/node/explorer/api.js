// Reading the node's JSON API: the same routes posctl uses, from the page's own origin.

/** An API answer other than 200: the status and the node's one-line message. */
export class ApiFailure extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

// Amounts go up to 2^63: an integer JavaScript cannot hold exactly is kept as its digits.
function exact(key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
    return context.source;
  }
  return value;
}

/** GET a route; the parsed JSON, or an ApiFailure carrying the node's error message. */
export async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text, exact);
  } catch {
    throw new ApiFailure(response.status, `the node answered ${path} with something that is not JSON`, "BadReply");
  }
  if (!response.ok) {
    throw new ApiFailure(response.status, body && body.error ? body.error : `HTTP ${response.status}`, body && body.type);
  }
  return body;
}

let routes = null;

/** True if this node serves the route ("GET /mempool"): read once from the route index at GET /. Only an
 *  answer is kept: a failed read throws (the page's error, retried) and is asked again next time, where
 *  remembering it as "no routes" hid history and the pending list for the whole session. */
export async function serves(route) {
  if (routes === null) {
    const asked = api("/").then((index) => new Set(index.routes));
    asked.catch(() => { if (routes === asked) routes = null; });
    routes = asked;
  }
  return (await routes).has(route);
}
