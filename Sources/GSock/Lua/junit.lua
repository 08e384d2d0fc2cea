-- The JUnit XML report of `gsockd test --junit FILE`, the format CI systems read:
-- <testsuites> holding a <testsuite> per test file, a <testcase> per test, with
-- <failure> or <skipped> in it.
--
-- Text from tests may hold anything: it is escaped, bytes that are not valid UTF-8
-- and control characters that XML 1.0 cannot carry at all are written as "\xNN".
local concat, ipairs, tostring = table.concat, ipairs, tostring

local function printable(s)
  s = tostring(s)
  if not utf8.len(s) then
    s = s:gsub("[\128-\255]", function(c) return ("\\x%02X"):format(c:byte()) end)
  end
  return (s:gsub("[\0-\8\11\12\14-\31]", function(c) return ("\\x%02X"):format(c:byte()) end))
end

local text_entities = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;" }
local attribute_entities = {
  ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;",
  ["\n"] = "&#10;", ["\r"] = "&#13;", ["\t"] = "&#9;",
}

local function text(s) return (printable(s):gsub("[&<>]", text_entities)) end
local function attribute(s) return (printable(s):gsub("[&<>\"'\n\r\t]", attribute_entities)) end

local function seconds(t) return ("%.3f"):format(t or 0) end

local function counts(cases)
  local failures, skipped = 0, 0
  for _, case in ipairs(cases) do
    if case.status == "fail" then failures = failures + 1 elseif case.status == "skip" then skipped = skipped + 1 end
  end
  return failures, skipped
end

local function write_case(out, case)
  out[#out + 1] = ('    <testcase classname="%s" name="%s" time="%s"'):format(
    attribute(case.file), attribute(case.name), seconds(case.time))
  local notes = case.notes or {}
  if case.status == "ok" and #notes == 0 then
    out[#out + 1] = "/>\n"
    return
  end
  out[#out + 1] = ">\n"
  if case.status == "fail" then
    local texts = case.failure_texts or {}
    local first = (texts[1] or "failed"):match("^[^\n]*")
    out[#out + 1] = ('      <failure message="%s" type="failure">%s</failure>\n'):format(
      attribute(first), text(concat(texts, "\n\n")))
  elseif case.status == "skip" then
    if case.reason and case.reason ~= "" then
      out[#out + 1] = ('      <skipped message="%s"/>\n'):format(attribute(case.reason))
    else
      out[#out + 1] = "      <skipped/>\n"
    end
  end
  if #notes > 0 then
    out[#out + 1] = ("      <system-err>%s</system-err>\n"):format(text(concat(notes, "\n")))
  end
  out[#out + 1] = "    </testcase>\n"
end

--- Writes the report of `suites` ({name, time, cases, notes}) to the file `path`.
--- Returns true, or nil and a message.
return function(path, suites)
  local out = { '<?xml version="1.0" encoding="UTF-8"?>\n' }
  local total, failures, skipped, time = 0, 0, 0, 0
  for _, suite in ipairs(suites) do
    local f, s = counts(suite.cases)
    total, failures, skipped, time = total + #suite.cases, failures + f, skipped + s, time + (suite.time or 0)
  end
  out[#out + 1] = ('<testsuites name="gsockd test" tests="%d" failures="%d" errors="0" skipped="%d" time="%s">\n')
                  :format(total, failures, skipped, seconds(time))
  for _, suite in ipairs(suites) do
    local f, s = counts(suite.cases)
    out[#out + 1] = ('  <testsuite name="%s" tests="%d" failures="%d" errors="0" skipped="%d" time="%s">\n')
                    :format(attribute(suite.name), #suite.cases, f, s, seconds(suite.time))
    for _, case in ipairs(suite.cases) do write_case(out, case) end
    if suite.notes and #suite.notes > 0 then
      out[#out + 1] = ("    <system-err>%s</system-err>\n"):format(text(concat(suite.notes, "\n")))
    end
    out[#out + 1] = "  </testsuite>\n"
  end
  out[#out + 1] = "</testsuites>\n"
  local file, err = io.open(path, "w")
  if not file then return nil, err end
  local ok, werr = file:write(concat(out))
  local closed, cerr = file:close()
  if not ok then return nil, ("%s: %s"):format(path, werr) end
  if not closed then return nil, ("%s: %s"):format(path, cerr) end
  return true
end
