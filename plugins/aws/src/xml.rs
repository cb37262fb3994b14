//! A small XML tree over quick-xml's reader: the AWS query and REST-XML
//! responses are small, so a tree with lookups by local name (namespaces and
//! prefixes dropped) is the simplest way to read them.

use quick_xml::Reader;
use quick_xml::events::Event;

/// One element: its local name, its text (entities resolved) and its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a path of child names.
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |el, name| el.child(name))
    }

    /// The trimmed text of the element at `path`, when there is one and it is not empty.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).map(|e| e.text.trim()).filter(|t| !t.is_empty())
    }

    /// The text at `path` as an owned string (empty when absent).
    pub fn string_at(&self, path: &[&str]) -> String {
        self.text_at(path).unwrap_or_default().to_string()
    }

    /// The children of the element at `path` named `item` (`vpcSet` / `item`,
    /// `Subnets` / `member`): the way AWS writes lists. Empty when absent.
    pub fn list<'a>(&'a self, path: &[&str], item: &'a str) -> Vec<&'a Element> {
        self.at(path).map(|e| e.children_named(item).collect()).unwrap_or_default()
    }

    /// The first element named `name` anywhere below (depth first), or this one.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// Parses a document into its root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    // Every start tag has its end tag: keep the check on, a truncated body is an error.
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event =
            reader.read_event().map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                stack.push(Element { name: start.local_name().as_ref().to_string(), ..Element::default() });
            }
            Event::Empty(start) => {
                let el = Element { name: start.local_name().as_ref().to_string(), ..Element::default() };
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("malformed XML: an end tag without a start")?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or_else(|| format!("malformed XML: unknown entity `&{};`", &*r))?
                        .to_string(),
                    Err(e) => return Err(format!("malformed XML: {e}")),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions, doctypes.
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("malformed XML: the document ends inside an element".into());
    }
    root.ok_or_else(|| "malformed XML: no root element".into())
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err("malformed XML: more than one root element".into()),
    }
    Ok(())
}

/// Escapes text for an element's content or an attribute value.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_ec2_response() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>7a62c49f</requestId>
    <vpcSet>
        <item>
            <vpcId>vpc-1a2b3c4d</vpcId>
            <ownerId>111122223333</ownerId>
            <cidrBlock>10.0.0.0/16</cidrBlock>
            <tagSet><item><key>Name</key><value>a &amp; b &#x41;</value></item></tagSet>
            <ipv6CidrBlockAssociationSet/>
        </item>
        <item><vpcId>vpc-2</vpcId></item>
    </vpcSet>
</DescribeVpcsResponse>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "DescribeVpcsResponse");
        let items = root.list(&["vpcSet"], "item");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].text_at(&["vpcId"]), Some("vpc-1a2b3c4d"));
        assert_eq!(items[0].list(&["tagSet"], "item")[0].text_at(&["value"]), Some("a & b A"));
        assert_eq!(items[0].text_at(&["ipv6CidrBlockAssociationSet"]), None);
        assert!(items[0].at(&["ipv6CidrBlockAssociationSet"]).is_some());
        assert_eq!(items[1].string_at(&["cidrBlock"]), "");
        assert_eq!(root.find("ownerId").map(|e| e.text.as_str()), Some("111122223333"));
    }

    #[test]
    fn prefixes_are_dropped_and_cdata_kept() {
        let root = parse(r#"<a:Root xmlns:a="x"><a:V><![CDATA[<raw>]]></a:V></a:Root>"#).unwrap();
        assert_eq!(root.name, "Root");
        assert_eq!(root.text_at(&["V"]), Some("<raw>"));
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").unwrap_err().contains("ends inside"));
        assert!(parse("").unwrap_err().contains("no root"));
        assert!(parse("<a/><b/>").unwrap_err().contains("more than one root"));
        assert!(parse("<html><body>Internal Server Error").is_err());
    }

    #[test]
    fn escapes_text() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
