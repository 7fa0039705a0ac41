//! The appended-text property in one state: every text an append puts is a
//! token unique in the run (`<a{writer}.{n}:…>`), so one there twice, or
//! one missing from where it was acknowledged, shows in any state.

use std::collections::HashMap;

use stigmer_proto::agentexecution::AgentExecution;

use super::record::Fact;

/// The appended texts of a state: each token's id (`a3.17`), message and
/// byte offset.
pub(super) fn tokens(e: &AgentExecution) -> Vec<(&str, usize, usize)> {
    let mut out = Vec::new();
    let Some(status) = e.status.as_ref() else {
        return out;
    };
    for (i, m) in status.messages.iter().enumerate() {
        let c = m.content.as_str();
        let mut at = 0;
        while let Some(p) = c[at..].find("<a") {
            let start = at + p;
            let Some(colon) = c[start..].find(':') else {
                break;
            };
            out.push((&c[start + 1..start + colon], i, start));
            at = start + colon;
        }
    }
    out
}

/// What is wrong with the appended texts of a state: a text twice, or one
/// acknowledged at this state's revision (`facts`) not at its offset.
pub fn check_texts(e: &AgentExecution, facts: &[Fact]) -> Option<String> {
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for (id, message, offset) in tokens(e) {
        if let Some((m, o)) = seen.insert(id, (message, offset)) {
            return Some(format!(
                "the appended text <{id}:…> is there twice: message {m} at byte {o} and message {message} at byte {offset}"
            ));
        }
    }
    let messages = e.status.as_ref().map(|s| &s.messages[..]).unwrap_or(&[]);
    for f in facts {
        let at = messages.get(f.message_index as usize).and_then(|m| {
            m.content
                .get(f.offset as usize..f.offset as usize + f.text.len())
        });
        if at != Some(f.text.as_str()) {
            return Some(format!(
                "the acknowledged append of {:?} at byte {} of message {} is not there (found {at:?}; {} messages)",
                f.text,
                f.offset,
                f.message_index,
                messages.len()
            ));
        }
    }
    None
}
