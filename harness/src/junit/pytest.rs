//! The cases of one pytest file, read from the JUnit XML pytest wrote for it (`--junitxml`, with
//! `-o junit_logging=all` so each case carries its own captured output). Either of pytest's
//! families (`xunit2`, its default, or `xunit1`) reads the same: `<testcase classname name time>`
//! with an optional `<failure>`, `<error>` or `<skipped>` (`message` attribute, details as text)
//! and `<system-out>`/`<system-err>`.

use quick_xml::{
    Reader,
    escape::resolve_predefined_entity,
    events::{BytesStart, Event},
};

/// What a case's result element says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    /// `failure`, `error` or `skipped`.
    pub(super) element: &'static str,
    /// Its `message` attribute.
    pub(super) message: String,
    /// Its `type` attribute (`pytest.skip`, `pytest.xfail`, …).
    pub(super) kind: Option<String>,
    /// Its text: the traceback, the skip reason's location.
    pub(super) text: String,
}

/// One pytest case as pytest reported it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PytestCase {
    /// pytest's `classname`: the module's dotted path, then any classes.
    pub(super) classname: String,
    /// pytest's `name`: the function, with parameters (`test_x[1]`).
    pub(super) name: String,
    /// Seconds, as pytest wrote them.
    pub(super) time: Option<f64>,
    /// Its failure, error or skip; the first one when pytest wrote several (a failure and a
    /// teardown error), the others' messages appended to its text.
    pub(super) problem: Option<Problem>,
    pub(super) system_out: String,
    pub(super) system_err: String,
}

/// Why pytest's XML could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum PytestXmlError {
    /// Not well-formed XML.
    #[error("{0}")]
    Xml(#[from] quick_xml::Error),
    /// An attribute that is not well-formed.
    #[error("{0}")]
    Attribute(#[from] quick_xml::events::attributes::AttrError),
    /// An entity that is neither predefined nor a character reference.
    #[error("unknown entity &{0};")]
    Entity(String),
}

/// Where the reader is inside a `<testcase>`.
enum Inside {
    Nothing,
    Problem,
    Out,
    Err,
    Other,
}

/// Every `<testcase>` of pytest's XML, in order.
pub(super) fn parse(xml: &str) -> Result<Vec<PytestCase>, PytestXmlError> {
    let mut reader = Reader::from_str(xml);
    let mut cases = Vec::new();
    let mut case: Option<PytestCase> = None;
    let mut inside = Inside::Nothing;
    let mut text = String::new();
    let mut pending: Option<Problem> = None;
    loop {
        match reader.read_event()? {
            Event::Eof => break,
            Event::Start(e) => match (case.as_mut(), e.local_name().as_ref()) {
                (None, b"testcase") => case = Some(start_case(&e)?),
                (Some(_), name) => {
                    text.clear();
                    inside = match name {
                        b"failure" | b"error" | b"skipped" => {
                            pending = Some(problem(&e)?);
                            Inside::Problem
                        }
                        b"system-out" => Inside::Out,
                        b"system-err" => Inside::Err,
                        _ => Inside::Other,
                    };
                }
                (None, _) => {}
            },
            Event::Empty(e) => match (case.as_mut(), e.local_name().as_ref()) {
                (None, b"testcase") => cases.push(start_case(&e)?),
                (Some(c), b"failure" | b"error" | b"skipped") => add_problem(c, problem(&e)?),
                _ => {}
            },
            // Text outside a case (whitespace between elements) is not kept.
            Event::Text(t) if case.is_some() => {
                text.push_str(&t.xml10_content().map_err(quick_xml::Error::from)?);
            }
            Event::CData(t) if case.is_some() => {
                text.push_str(&t.xml10_content().map_err(quick_xml::Error::from)?);
            }
            Event::GeneralRef(r) if case.is_some() => {
                if let Some(c) = r.resolve_char_ref()? {
                    text.push(c);
                } else {
                    let name = r.xml10_content().map_err(quick_xml::Error::from)?;
                    let value = resolve_predefined_entity(&name)
                        .ok_or_else(|| PytestXmlError::Entity(name.to_string()))?;
                    text.push_str(value);
                }
            }
            Event::End(e) => {
                let Some(c) = case.as_mut() else { continue };
                if e.local_name().as_ref() == b"testcase" {
                    cases.extend(case.take());
                    continue;
                }
                match std::mem::replace(&mut inside, Inside::Nothing) {
                    Inside::Problem => {
                        if let Some(mut p) = pending.take() {
                            p.text = std::mem::take(&mut text);
                            add_problem(c, p);
                        }
                    }
                    Inside::Out => c.system_out.push_str(&captured(&std::mem::take(&mut text))),
                    Inside::Err => c.system_err.push_str(&captured(&std::mem::take(&mut text))),
                    Inside::Nothing | Inside::Other => text.clear(),
                }
            }
            _ => {}
        }
    }
    Ok(cases)
}

/// What pytest captured, without the banners it puts before each part (`---- Captured Out
/// ----`, written even when the part is empty) and the blank lines around them.
fn captured(text: &str) -> String {
    let banner = |line: &str| {
        line.starts_with('-')
            && line.ends_with('-')
            && line.trim_matches('-').trim().starts_with("Captured ")
    };
    let mut out = String::new();
    for part in text
        .split('\n')
        .collect::<Vec<_>>()
        .split(|line| banner(line))
    {
        let part = part.join("\n");
        let part = part.trim_matches('\n');
        if !part.is_empty() {
            out.push_str(part);
            out.push('\n');
        }
    }
    out
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, PytestXmlError> {
    match e.try_get_attribute(name)? {
        None => Ok(None),
        Some(a) => Ok(Some(
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                .into_owned(),
        )),
    }
}

fn start_case(e: &BytesStart<'_>) -> Result<PytestCase, PytestXmlError> {
    Ok(PytestCase {
        classname: attr(e, "classname")?.unwrap_or_default(),
        name: attr(e, "name")?.unwrap_or_default(),
        time: attr(e, "time")?.and_then(|t| t.trim().parse().ok()),
        ..PytestCase::default()
    })
}

fn problem(e: &BytesStart<'_>) -> Result<Problem, PytestXmlError> {
    let element = match e.local_name().as_ref() {
        b"failure" => "failure",
        b"error" => "error",
        _ => "skipped",
    };
    Ok(Problem {
        element,
        message: attr(e, "message")?.unwrap_or_default(),
        kind: attr(e, "type")?,
        text: String::new(),
    })
}

fn add_problem(case: &mut PytestCase, p: Problem) {
    match &mut case.problem {
        None => case.problem = Some(p),
        Some(first) => {
            first
                .text
                .push_str(&format!("\n[{}: {}]\n{}", p.element, p.message, p.text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pytest 9 writes (`--junitxml`, `-o junit_logging=all`), trimmed.
    const PYTEST_XML: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.051" timestamp="2026-12-01T10:00:00.000000+00:00" hostname="h"><testcase classname="test_cases" name="test_passes" time="0.001"><system-out>--------------------------------- Captured Log ---------------------------------

--------------------------------- Captured Out ---------------------------------
printed &lt;tag&gt; &amp; &#8364;

</system-out><system-err>--------------------------------- Captured Err ---------------------------------

</system-err></testcase><testcase classname="test_cases.TestGroup" name="test_fails[1]" time="0.002"><failure message="AssertionError: assert 1 == 2&#10;  + where 1 = f()">def test_fails():
&gt;       assert 1 == 2
E       AssertionError</failure></testcase><testcase classname="test_cases" name="test_skipped" time="0.000"><skipped type="pytest.skip" message="not today">/x/test_cases.py:9: not today</skipped></testcase></testsuite></testsuites>"#;

    #[test]
    fn every_pytest_case_is_read_with_its_result_and_output_unescaped() {
        let cases = parse(PYTEST_XML).expect("parses");
        assert_eq!(cases.len(), 3);
        assert_eq!(
            (cases[0].classname.as_str(), cases[0].name.as_str()),
            ("test_cases", "test_passes")
        );
        assert_eq!(cases[0].time, Some(0.001));
        assert!(cases[0].problem.is_none());
        assert_eq!(cases[0].system_err, "", "empty parts are left out");
        assert!(
            cases[0].system_out.contains("printed <tag> & €\n"),
            "{:?}",
            cases[0].system_out
        );

        let failure = cases[1].problem.as_ref().expect("a failure");
        assert_eq!(cases[1].classname, "test_cases.TestGroup");
        assert_eq!(failure.element, "failure");
        assert_eq!(
            failure.message,
            "AssertionError: assert 1 == 2\n  + where 1 = f()"
        );
        assert!(
            failure.text.contains(">       assert 1 == 2\n"),
            "{}",
            failure.text
        );

        let skipped = cases[2].problem.as_ref().expect("a skip");
        assert_eq!(
            (skipped.element, skipped.message.as_str()),
            ("skipped", "not today")
        );
        assert_eq!(skipped.kind.as_deref(), Some("pytest.skip"));
    }

    #[test]
    fn xml_that_is_not_well_formed_is_an_error_not_a_panic() {
        assert!(parse("<testsuites><testcase name=\"x\"></testsuites>").is_err());
        assert!(parse("<testsuite><testcase name=\"x\">&nope;</testcase></testsuite>").is_err());
    }
}
