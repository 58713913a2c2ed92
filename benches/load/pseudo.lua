-- The nginx + Lua peer: the rewriting a team would script by hand, doing the
-- same work as scrim's pseudonymising route (pseudo-rules.toml): parse the
-- JSON body (lua-cjson), keep only the allow-listed fields, replace the name,
-- the email and the IP by keyed HMAC-SHA256 pseudonyms (OpenSSL through the
-- LuaJIT FFI, one key per kind derived from a root key), re-encode.
--
-- Tokens have scrim's shapes: "Participant k1_<26 base32hex>",
-- "k1_<26 base32hex>@pseudonym.invalid", and an IPv4 in 240.0.0.0/4.

local ffi = require "ffi"
local bit = require "bit"
local cjson = require "cjson.safe"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
int RAND_bytes(unsigned char *buf, int num);
]]

local crypto = ffi.load("crypto")
local sha256 = crypto.EVP_sha256()
local md = ffi.new("unsigned char[32]")
local mdlen = ffi.new("unsigned int[1]")

local function hmac(key, data)
  crypto.HMAC(sha256, key, #key, data, #data, md, mdlen)
  return md
end

-- A root key per nginx start (the peer needs a secret, not a key ring).
local root = ffi.new("unsigned char[32]")
assert(crypto.RAND_bytes(root, 32) == 1)
root = ffi.string(root, 32)

local keys = {}
for _, kind in ipairs({ "name", "email", "ip" }) do
  keys[kind] = ffi.string(hmac(root, "scrim-bench|audience-measurement|analytics|" .. kind), 32)
end

local B32 = "0123456789abcdefghijklmnopqrstuv"
local b32 = {}
for i = 0, 31 do b32[i] = B32:sub(i + 1, i + 1) end
local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift

-- "k1_" and 128 bits of the digest in lower-case base32hex (26 characters).
local out = {}
local function token(kind, normalised)
  local d = hmac(keys[kind], normalised)
  local acc, bits, n = 0, 0, 0
  for i = 0, 15 do
    acc = bor(lshift(band(acc, 0xffffff), 8), d[i])
    bits = bits + 8
    while bits >= 5 do
      bits = bits - 5
      n = n + 1
      out[n] = b32[band(rshift(acc, bits), 31)]
    end
  end
  n = n + 1
  out[n] = b32[band(lshift(acc, 5 - bits), 31)]
  return "k1_" .. table.concat(out, "", 1, n)
end

local function name(v)
  if type(v) ~= "string" then return nil end
  local norm = v:lower():gsub("%s+", " "):match("^ ?(.-) ?$")
  return "Participant " .. token("name", norm)
end

local function email(v)
  if type(v) ~= "string" then return nil end
  local norm = v:match("^%s*(.-)%s*$"):lower()
  return token("email", norm) .. "@pseudonym.invalid"
end

local function ip(v)
  if type(v) ~= "string" then return nil end
  local a, b, c, e = v:match("^%s*(%d+)%.(%d+)%.(%d+)%.(%d+)%s*$")
  if not a then return nil end -- (the peer handles IPv4 only; the events carry IPv4)
  local norm = tonumber(a) .. "." .. tonumber(b) .. "." .. tonumber(c) .. "." .. tonumber(e)
  local d = hmac(keys.ip, norm)
  return "241." .. d[0] .. "." .. d[1] .. "." .. d[2]
end

-- The allow-list: true keeps the value, a function rewrites it, a table
-- descends; every other member is dropped.
local allow = {
  event = true, type = true, timestamp = true,
  webinar = { id = true, language = true },
  participant = { name = name, email = email, ip = ip, role = true },
  context = { country = true, screen = true, locale = true, timezone = true },
  properties = {
    duration_s = true, feature = true, poll_id = true, answer = true,
    questions_asked = true, camera_on = true, microphone_on = true,
    reactions = true, attention_score = true,
  },
}

local function walk(v, spec)
  local o = {}
  for k, rule in pairs(spec) do
    local x = v[k]
    if x ~= nil then
      if rule == true then
        o[k] = x
      elseif type(rule) == "function" then
        o[k] = rule(x)
      elseif type(x) == "table" then
        o[k] = walk(x, rule)
      end
    end
  end
  return o
end

local M = {}

-- rewrite_by_lua: read the body, rewrite it, or refuse (fail closed).
function M.rewrite()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    return ngx.exit(413) -- larger than client_body_buffer_size: not handled
  end
  local ev = cjson.decode(body)
  if type(ev) ~= "table" then
    return ngx.exit(400)
  end
  ngx.req.set_body_data(cjson.encode(walk(ev, allow)))
end

return M
