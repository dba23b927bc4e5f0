// A Yeastar CDR client written the way public Node.js integrations are: the https module,
// certificate checks off (PBXs ship self-signed certificates), JSON bodies, parameters
// through encodeURIComponent, the CSV split on newlines. Usage:
//   node yeastar_node.js BASE_URL USER MD5 VERSION METHOD EXT START END
const https = require("https");
const http = require("http");

const [base, user, md5, version, method, ext, start, end] = process.argv.slice(2);
const url = new URL(base);
const lib = url.protocol === "https:" ? https : http;
const selector = version === "v2.0.0" ? "number" : "extid";

function call(httpMethod, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? "" : JSON.stringify(body);
    const req = lib.request(
      {
        hostname: url.hostname,
        port: url.port,
        path,
        method: httpMethod,
        rejectUnauthorized: false,
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

(async () => {
  const api = `/api/${version}`;
  const login = JSON.parse((await call("POST", `${api}/login`, { username: user, password: md5, port: 8260, version: "1.0.2" })).text);
  if (login.status !== "Success") throw new Error("login: " + JSON.stringify(login));
  const token = login.token;
  const asked = JSON.parse(
    (await call("POST", `${api}/cdr/get_random?token=${token}`, { [selector]: ext, starttime: start, endtime: end })).text,
  );
  if (asked.status !== "Success") throw new Error("get_random: " + JSON.stringify(asked));
  const link =
    `${api}/cdr/download?${selector}=${encodeURIComponent(ext)}` +
    `&starttime=${encodeURIComponent(start)}&endtime=${encodeURIComponent(end)}` +
    `&token=${token}&random=${asked.random}`;
  // The axios-style POST passes its config object as the body; the server must ignore it.
  const got = await call(method, link, method === "POST" ? { responseType: "blob" } : undefined);
  if (got.text.includes('"errno"')) throw new Error("download: " + got.text);
  const lines = got.text.replace(/^\uFEFF/, "").split(/\r?\n/).filter((l) => l.length > 0);
  const rows = lines.slice(1).map((l) => l.split(","));
  console.log(JSON.stringify({ header: lines[0], rows: rows.length, first: rows[0], type: got.headers["content-type"] }));
})().catch((e) => {
  console.error(String(e));
  process.exit(1);
});
